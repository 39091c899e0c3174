from config.runtime import tune_garbage_collector
from worker.celery import app as celery_app

# Here, so that every process that loads the settings (web, workers, commands) runs alike.
tune_garbage_collector()

__all__ = ["celery_app"]
