import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# What a server sets for each request (CGI's names), never taken for the process's.
_REQUEST_KEYS = frozenset(
    {
        "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "HTTPS",
        "PATH_INFO", "QUERY_STRING", "RAW_URI", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_PORT",
        "REMOTE_USER", "REQUEST_METHOD", "REQUEST_URI", "SCRIPT_NAME", "SERVER_NAME",
        "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
    }
)  # fmt: skip
# granian, like wsgiref, copies the process's environment into every request's: the
# database and broker URLs, passwords included, would then sit in request.META, which error
# reports print; and a variable named HTTP_... would pass for a header the client never sent.
_PROCESS_ENVIRONMENT = {key: value for key, value in os.environ.items() if key not in _REQUEST_KEYS}


def without_process_environment(app):
    """`app` given only the request's own variables: a key is dropped where it holds the
    process's value, so a request variable of the same name (rare) is kept."""

    def application(environ, start_response):
        for key in _PROCESS_ENVIRONMENT.keys() & environ.keys():
            if environ[key] == _PROCESS_ENVIRONMENT[key]:
                del environ[key]
        return app(environ, start_response)

    return application


application = without_process_environment(get_wsgi_application())
