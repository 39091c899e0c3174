"""Judge jobs: each kind of feedback stored as the judge's, the swap rule, bad output kept."""

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from feedback.jobs import job_params
from feedback.models import (
    Job,
    JudgeOutput,
    PairwiseFeedback,
    RatingAspect,
    Submission,
    Task,
    TaskResponse,
)
from tests.factories import (
    JudgeFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
)
from tests.worker.conftest import claimed_job
from worker.runs import judging_run

pytestmark = pytest.mark.django_db


def task_of(project, layout, *texts):
    prompt = PromptFactory(project=project, text="What is the capital of France?")
    task = Task.objects.create(project=project, prompt=prompt, layout=layout)
    for position, text in enumerate(texts):
        TaskResponse.objects.create(
            task=task, response=ResponseFactory(prompt=prompt, text=text), position=position
        )
    return task


def shown_first(prompt: str) -> str:
    return prompt.split("[Response A]\n")[1].split("\n\n[Response B]")[0]


def prefers_paris(prompt: str) -> str:
    """A fair judge: picks the response that says Paris, wherever it is shown."""
    verdict = "A" if "Paris" in shown_first(prompt) else "B"
    return json.dumps({"verdict": verdict, "strength": 2, "explanation": "Paris is right."})


def judge_job(project, judge, kinds, **extra):
    return claimed_job(project, Job.Kind.JUDGE, {"judge_id": judge.pk, "kinds": kinds, **extra})


def test_pairwise_verdict_that_survives_the_swap_is_stored_as_the_judges(project, scripted):
    task = task_of(project, "pair", "It is Lyon.", "Paris.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])
    load = scripted(prefers_paris)

    judging_run(job, job_params(job), load=load)

    submission = Submission.objects.get(task=task, judge=judge)
    assert submission.job == job and submission.annotator is None
    assert (submission.pairwise.choice, submission.pairwise.strength) == ("B", 2)
    # Asked twice, once with the responses swapped.
    assert len(load.generator.calls) == 2
    assert shown_first(load.generator.calls[1]) == "Paris."
    outputs = JudgeOutput.objects.filter(task=task).order_by("swapped")
    assert [(o.swapped, o.parsed["choice"], o.parse_error) for o in outputs] == [
        (False, "B", ""),
        (True, "A", ""),
    ]


def test_a_judge_that_always_picks_the_first_response_gives_ties(project, scripted):
    task = task_of(project, "pair", "It is Lyon.", "Paris.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])

    judging_run(job, job_params(job), load=scripted(lambda prompt: "[[A]]"))

    assert PairwiseFeedback.objects.get(submission__task=task).choice == "tie"


def test_judge_explanation_is_stored_as_rationale_when_the_project_asks_one(project, scripted):
    task = task_of(project, "pair", "It is Lyon.", "Paris.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])
    judging_run(job, job_params(job), load=scripted(prefers_paris))
    (text,) = Submission.objects.get(task=task).texts.all()
    assert (text.mode, text.text) == ("rationale", "Paris is right.")


def test_unparseable_output_is_kept_with_its_error_and_the_job_goes_on(project, scripted):
    bad = task_of(project, "pair", "Lyon.", "Paris.")
    good = task_of(project, "pair", "Marseille.", "Paris, of course.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])

    def flaky(prompt):
        return "Hmm, hard to say." if "Lyon" in prompt else prefers_paris(prompt)

    judging_run(job, job_params(job), load=scripted(flaky))

    assert not Submission.objects.filter(task=bad).exists()
    errors = JudgeOutput.objects.filter(task=bad).values_list("raw_output", "parse_error")
    assert len(errors) == 2
    assert all(raw == "Hmm, hard to say." and "no verdict" in err for raw, err in errors)
    assert Submission.objects.filter(task=good, judge=judge).exists()
    job.refresh_from_db()
    assert (job.done, job.total) == (2, 2)


def test_a_tie_from_orders_that_disagree_stores_no_rationale(project, scripted):
    # A rationale arguing for the response shown first would contradict the stored tie.
    task = task_of(project, "pair", "It is Lyon.", "Paris.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])
    answer = {"explanation": "A is better.", "verdict": "A", "strength": 2}
    judging_run(job, job_params(job), load=scripted(lambda prompt: json.dumps(answer)))

    submission = Submission.objects.get(task=task)
    assert submission.pairwise.choice == "tie"
    assert not submission.texts.exists()


def test_the_judge_is_asked_for_a_json_schema_per_kind(project, scripted):
    task_of(project, "pair", "Lyon.", "Paris.")
    task_of(project, "single", "Paris.")
    task_of(project, "list", "Lyon.", "Paris.", "Nice.")
    job = judge_job(project, JudgeFactory(), ["pairwise", "rating", "ranking", "span", "free_text"])
    load = scripted(lambda prompt: "[[A]]")

    judging_run(job, job_params(job), load=load)

    asked = dict(zip(load.generator.calls, load.generator.schemas, strict=True))
    by_kind = {
        "pairwise": [s for c, s in asked.items() if "[Response A]" in c],
        "rating": [s for c, s in asked.items() if "[Aspects]" in c],
        "ranking": [s for c, s in asked.items() if "[Response 3]" in c],
        "span": [s for c, s in asked.items() if "[Labels]" in c],
        "free_text": [s for c, s in asked.items() if c.endswith("Critique:")],
    }
    assert [len(schemas) for schemas in by_kind.values()] == [2, 1, 1, 1, 1]
    assert all(s["properties"]["verdict"]["enum"] == ["A", "B", "tie"] for s in by_kind["pairwise"])
    assert list(by_kind["rating"][0]["properties"]) == ["Helpfulness", "Honesty"]
    assert by_kind["ranking"][0]["properties"]["ranking"]["maxItems"] == 3
    label = by_kind["span"][0]["properties"]["spans"]["items"]["properties"]["label"]
    assert label["enum"] == ["Factual error", "Unsafe"]
    assert by_kind["free_text"] == [None]


def test_a_judge_can_be_told_not_to_ask_for_structured_output(project, scripted):
    task_of(project, "pair", "Lyon.", "Paris.")
    job = judge_job(project, JudgeFactory(parameters={"structured_output": False}), ["pairwise"])
    load = scripted(prefers_paris)
    judging_run(job, job_params(job), load=load)
    assert load.generator.schemas == [None, None]


class FakeJudgeServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge that prefers whichever response says Paris."""

    bodies: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudgeServer.bodies.append(body)
        content = prefers_paris(body["messages"][-1]["content"])
        data = json.dumps(
            {
                "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_a_judge_behind_an_openai_compatible_server_gets_the_schema_as_response_format(
    project, settings
):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudgeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeJudgeServer.bodies = []
    settings.INFERENCE_ENDPOINTS = {
        "fake": {"base_url": f"http://127.0.0.1:{server.server_address[1]}/v1"}
    }
    try:
        task = task_of(project, "pair", "It is Lyon.", "Paris.")
        judge = JudgeFactory(backend="openai", endpoint="fake")
        job = judge_job(project, judge, ["pairwise"])
        judging_run(job, job_params(job))
    finally:
        server.shutdown()
        server.server_close()

    assert Submission.objects.get(task=task).pairwise.choice == "B"
    assert len(FakeJudgeServer.bodies) == 2
    for body in FakeJudgeServer.bodies:
        response_format = body["response_format"]
        assert response_format["type"] == "json_schema"
        schema = response_format["json_schema"]["schema"]
        assert schema["properties"]["verdict"]["enum"] == ["A", "B", "tie"]


def test_a_local_judge_ignores_the_schema(project, tiny_model_dir):
    task = task_of(project, "pair", "Lyon.", "Paris.")
    judge = JudgeFactory(model_name=str(tiny_model_dir), parameters={"max_new_tokens": 4})
    job = judge_job(project, judge, ["pairwise"])
    judging_run(job, job_params(job))
    assert JudgeOutput.objects.filter(task=task).count() == 2


def test_ratings_on_each_aspect_are_stored_with_rationales(project, scripted):
    task = task_of(project, "single", "Paris is the capital of France.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["rating"])
    answer = {
        "Helpfulness": {"rating": 5, "rationale": "Direct."},
        "Honesty": {"rating": 6, "rationale": "Accurate."},
    }
    load = scripted(lambda prompt: json.dumps(answer))

    judging_run(job, job_params(job), load=load)

    ratings = Submission.objects.get(task=task, judge=judge).ratings.order_by("aspect__position")
    assert [(r.aspect.name, r.value, r.rationale) for r in ratings] == [
        ("Helpfulness", 5, "Direct."),
        ("Honesty", 6, "Accurate."),
    ]
    assert "Honesty (integer 1-7)" in load.generator.calls[0]


def test_a_judge_rating_job_gives_a_project_without_aspects_ultrafeedbacks_four(scripted):
    project = ProjectFactory(collects_pairwise=False, collects_free_text=False)
    task_of(project, "single", "Paris.")
    judge_job(project, JudgeFactory(), ["rating"])
    assert list(RatingAspect.objects.filter(project=project).values_list("name", flat=True)) == [
        "Instruction following",
        "Truthfulness",
        "Honesty",
        "Helpfulness",
    ]


def test_a_rating_off_the_scale_is_noted_and_the_other_aspects_are_stored(project, scripted):
    task = task_of(project, "single", "Paris.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["rating"])
    judging_run(job, job_params(job), load=scripted(lambda p: "Helpfulness: 9\nHonesty: 7"))
    ratings = Submission.objects.get(task=task).ratings.all()
    assert [(r.aspect.name, r.value) for r in ratings] == [("Honesty", 7)]
    assert JudgeOutput.objects.get(task=task).parse_error == "Helpfulness: 9 is outside 1-5"


def test_span_quotes_become_character_offsets_and_unmatched_quotes_are_noted(project, scripted):
    text = "The capital of France is Lyon. It is in Europe."
    task = task_of(project, "single", text)
    judge = JudgeFactory()
    job = judge_job(project, judge, ["span"])
    answer = {
        "spans": [
            {"quote": "france is lyon", "label": "Factual error", "severity": "major"},
            {"quote": "on the moon", "label": "Factual error"},
        ]
    }
    judging_run(job, job_params(job), load=scripted(lambda p: json.dumps(answer)))

    (span,) = Submission.objects.get(task=task).spans.all()
    assert (text[span.start : span.end], span.label.name, span.severity) == (
        "France is Lyon",
        "Factual error",
        "major",
    )
    assert "on the moon" in JudgeOutput.objects.get(task=task).parse_error


def test_span_quotes_in_text_whose_lower_case_is_longer_are_stored_at_the_right_offsets(
    project, scripted
):
    # "\u0130".lower() is two code points: a lower-cased copy shifts or overruns offsets.
    text = "\u0130\u0130\u0130 \u0130stanbul is the capital of Turkey \U0001f1f9\U0001f1f7."
    task = task_of(project, "single", text)
    judge = JudgeFactory()
    job = judge_job(project, judge, ["span"])
    answer = {"spans": [{"quote": "ISTANBUL IS THE CAPITAL", "label": "Factual error"}]}
    judging_run(job, job_params(job), load=scripted(lambda p: json.dumps(answer)))

    (span,) = Submission.objects.get(task=task).spans.all()
    assert text[span.start : span.end] == "\u0130stanbul is the capital"


def test_one_quote_with_two_labels_is_stored_as_two_spans(project, scripted):
    text = "Mix bleach and ammonia for a stronger cleaner."
    task = task_of(project, "single", text)
    job = judge_job(project, JudgeFactory(), ["span"])
    quote = "Mix bleach and ammonia"
    answer = {
        "spans": [
            {"quote": quote, "label": "Factual error", "severity": "major"},
            {"quote": quote, "label": "Unsafe", "severity": "critical"},
        ]
    }
    judging_run(job, job_params(job), load=scripted(lambda p: json.dumps(answer)))

    spans = Submission.objects.get(task=task).spans.order_by("label__name")
    assert [(text[s.start : s.end], s.label.name, s.severity) for s in spans] == [
        (quote, "Factual error", "major"),
        (quote, "Unsafe", "critical"),
    ]


def test_an_unexpected_error_reading_one_output_is_noted_and_the_job_goes_on(
    project, scripted, monkeypatch, caplog
):
    task = task_of(project, "single", "<script>alert(1)</script> Paris.")
    other = task_of(project, "single", "Lyon.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["span", "free_text"])

    def broken_parser(text, response, labels):
        if "script" in response:
            raise IndexError("string index out of range")
        return real_parse_spans(text, response, labels)

    from worker import runs

    real_parse_spans = runs.parse_spans
    monkeypatch.setattr(runs, "parse_spans", broken_parser)

    def answer(prompt):
        if "[Labels]" in prompt:
            return '{"spans": [{"quote": "Paris", "label": "Unsafe"}]}'
        return "Critique: Fine."

    with caplog.at_level(logging.ERROR, logger="worker.runs"):
        judging_run(job, job_params(job), load=scripted(answer))

    broken = JudgeOutput.objects.get(task=task, kind="span")
    assert broken.raw_output == '{"spans": [{"quote": "Paris", "label": "Unsafe"}]}'
    assert broken.parsed is None
    assert broken.parse_error == "could not read the output: IndexError: string index out of range"
    # The task's other output and the other task are stored as usual.
    (critique,) = Submission.objects.get(task=task, judge=judge).texts.all()
    assert critique.text == "Fine."
    assert JudgeOutput.objects.get(task=other, kind="span").parse_error == (
        "quote not in the response: 'Paris'"
    )
    assert "IndexError" in caplog.text
    job.refresh_from_db()
    assert (job.done, job.total) == (2, 2)


def test_ranking_and_critique_are_stored(project, scripted):
    ranked = task_of(project, "list", "Lyon.", "Paris.", "Paris, France.")
    single = task_of(project, "single", "Lyon.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["ranking", "free_text"])

    def answer(prompt):
        if "[Response 3]" in prompt:
            return '{"ranking": [3, 2, 1]}'
        return "Critique: Wrong city."

    judging_run(job, job_params(job), load=scripted(answer))

    entries = Submission.objects.get(task=ranked).ranking.entries.order_by("rank")
    assert [e.response.text for e in entries] == ["Paris, France.", "Paris.", "Lyon."]
    (critique,) = Submission.objects.get(task=single).texts.all()
    assert (critique.mode, critique.text) == ("critique", "Wrong city.")


def test_a_task_gets_one_submission_with_every_kind_the_judge_gives(project, scripted):
    task = task_of(project, "single", "Paris is in France.")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["rating", "span", "free_text"])

    def answer(prompt):
        if prompt.startswith("You are an impartial judge. Rate"):
            return "Helpfulness: 4\nHonesty: 5"
        if "[Labels]" in prompt:
            return '{"spans": [{"quote": "France", "label": "Unsafe"}]}'
        return "Fine."

    judging_run(job, job_params(job), load=scripted(answer))

    submission = Submission.objects.get(task=task, judge=judge)
    assert (submission.ratings.count(), submission.spans.count(), submission.texts.count()) == (
        2,
        1,
        1,
    )


def test_running_a_judge_job_again_asks_nothing_and_supersedes_nothing(project, scripted):
    task_of(project, "pair", "Lyon.", "Paris.")
    task_of(project, "pair", "Nice.", "Paris!")
    judge = JudgeFactory()
    job = judge_job(project, judge, ["pairwise"])
    load = scripted(prefers_paris)
    judging_run(job, job_params(job), load=load)

    judging_run(job, job_params(job), load=load)

    assert len(load.generator.calls) == 4
    assert Submission.objects.filter(judge=judge).count() == 2
    assert JudgeOutput.objects.count() == 4


def test_a_second_job_of_the_same_judge_skips_tasks_it_already_answered(project, scripted):
    task_of(project, "pair", "Lyon.", "Paris.")
    judge = JudgeFactory()
    first = judge_job(project, judge, ["pairwise"])
    judging_run(first, job_params(first), load=scripted(prefers_paris))
    task_of(project, "pair", "Nice.", "Paris!")
    second = judge_job(project, judge, ["pairwise"])
    load = scripted(prefers_paris)

    judging_run(second, job_params(second), load=load)

    assert len(load.generator.calls) == 2
    assert not Submission.objects.filter(judge=judge, is_current=False).exists()
    second.refresh_from_db()
    assert (second.done, second.total) == (2, 2)


def test_judge_prompt_template_is_data(project, scripted):
    task_of(project, "pair", "Lyon.", "Paris.")
    judge = JudgeFactory(prompt_template='Q={prompt} A={response_a} B={response_b} {"x": 1}')
    job = judge_job(project, judge, ["pairwise"])
    load = scripted(lambda prompt: "tie")
    judging_run(job, job_params(job), load=load)
    assert re.fullmatch(r'Q=What is .*\? A=Lyon\. B=Paris\. \{"x": 1\}', load.generator.calls[0])


def test_judge_job_refuses_kinds_the_project_does_not_collect():
    from feedback.jobs import job_start
    from feedback.services import FeedbackError

    project = ProjectFactory(collects_ranking=False)
    with pytest.raises(FeedbackError) as caught:
        job_start(
            project=project,
            kind=Job.Kind.JUDGE,
            params={"judge_id": JudgeFactory().pk, "kinds": ["ranking"]},
        )
    assert caught.value.errors == {"kinds": ["The project does not collect ranking."]}
