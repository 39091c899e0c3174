"""The leaderboard selector against the database: counts, slices, positions, style."""

import itertools
from collections import Counter

import pytest

from feedback.models import PairwiseFeedback, PairwiseTally, Response, Task
from feedback.selectors import project_leaderboard
from feedback.services import (
    FeedbackInput,
    PairwiseInput,
    pairwise_tally_rebuild,
    submission_create,
    tasks_extend,
)
from tests.factories import (
    JudgeFactory,
    MemberFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    hard_prompt,
)

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert('m')</script>"
MODELS = ["alpha", "βeta İ ✓", HOSTILE, "=cmd|' /C calc'!A0"]


@pytest.fixture
def arena():
    """Pairwise and ranking tasks over four models on chat and text prompts (two topics),
    answered by two annotators and a judge, display order shuffled as in real use."""
    project = ProjectFactory(
        collects_rating=False,
        collects_spans=False,
        collects_free_text=False,
        asks_critique=False,
        asks_rewrite=False,
        asks_rationale=False,
        collects_ranking=True,
        ranking_size=3,
    )
    annotators = []
    for name in ("ann-a", "ann-b"):
        annotators.append(UserFactory(username=name))
        MemberFactory(project=project, user=annotators[-1], role="annotator")
    judge = JudgeFactory(name="judge-<b>")
    prompts = []
    for index in range(6):
        prompt = PromptFactory(
            project=project,
            metadata={"topic": "code" if index % 2 else "maths", "level": index % 3},
            **hard_prompt(index, chat=True),
        )
        models = [MODELS[(index + k) % 4] for k in range(3)]
        for k, model in enumerate(models):
            ResponseFactory(prompt=prompt, model_name=model, text=f"Answer {k} " + "**x** " * k)
        prompts.append(prompt)
    tasks_extend(project=project, prompt_ids=[p.pk for p in prompts])
    return project, annotators, judge


def strength(model: str) -> int:
    return {"alpha": 3, "βeta İ ✓": 2, HOSTILE: 1}.get(model, 0)


def vote_all(project, annotators, judge, layouts=("pair", "list")) -> None:
    """Each source prefers the stronger model, ties equal ones; the judge ties half its
    pairs; rankings order by strength (the second annotator reverses them)."""
    tasks = Task.objects.filter(project=project, layout__in=layouts).order_by("id")
    for task_number, task in enumerate(tasks):
        ordered = task.ordered_responses()
        if task.layout == Task.Layout.PAIR:
            a, b = (strength(response.model_name) for response in ordered)
            choice = "A" if a > b else "B" if b > a else "tie"
            for annotator in annotators:
                submission_create(
                    task=task,
                    annotator=annotator,
                    feedback=FeedbackInput(
                        pairwise=PairwiseInput(choice, None if choice == "tie" else 2)
                    ),
                )
            judged = "tie" if task_number % 2 else choice
            submission_create(
                task=task,
                judge=judge,
                feedback=FeedbackInput(
                    pairwise=PairwiseInput(judged, None if judged == "tie" else 1)
                ),
            )
        elif task.layout == Task.Layout.LIST:
            best_first = sorted(ordered, key=lambda r: -strength(r.model_name))
            for number, annotator in enumerate(annotators):
                order = best_first if number == 0 else best_first[::-1]
                submission_create(
                    task=task,
                    annotator=annotator,
                    feedback=FeedbackInput(ranking=[r.pk for r in order]),
                )


def python_count(project, *, judges: bool | None = None, topic: str | None = None):
    """Per (model, model) in sorted order: [wins of the first, wins of the second, ties],
    and (decided, first-shown wins), counted one record at a time."""
    pairs: dict[tuple[str, str], list[int]] = {}
    decided = first_wins = 0
    for record in PairwiseFeedback.objects.filter(
        submission__task__project=project, submission__is_current=True
    ).select_related("submission__task__prompt", "submission"):
        task = record.submission.task
        if judges is not None and (record.submission.judge_id is not None) != judges:
            continue
        if topic is not None and task.prompt.metadata.get("topic") != topic:
            continue
        first, second = (r.model_name for r in task.ordered_responses())
        if record.choice != "tie":
            decided += 1
            first_wins += record.choice == "A"
        if first == second:
            continue
        key = tuple(sorted((first, second)))
        counts = pairs.setdefault(key, [0, 0, 0])
        if record.choice == "tie":
            counts[2] += 1
        else:
            winner = first if record.choice == "A" else second
            counts[key.index(winner)] += 1
    return pairs, (decided, first_wins)


def board_counts(board) -> dict[tuple[str, str], list[int]]:
    counts = {}
    for pair in board.pairs:
        key = tuple(sorted((pair.model_a, pair.model_b)))
        a_first = key[0] == pair.model_a
        wins = [pair.a_wins, pair.b_wins] if a_first else [pair.b_wins, pair.a_wins]
        counts[key] = [*wins, pair.ties]
    return counts


def test_counts_from_sql_equal_a_count_of_the_records_one_by_one(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge)
    board = project_leaderboard(project=project, resamples=50)
    expected, (decided, first_wins) = python_count(project)
    assert board_counts(board) == expected
    assert (board.first_decided, board.first_wins) == (decided, first_wins)
    assert board.votes == sum(sum(counts) for counts in expected.values())
    assert {m.model for m in board.models} == {name for key in expected for name in key}
    for standing in board.models:
        games = [c for key, c in expected.items() if standing.model in key]
        wins = sum(
            c[key.index(standing.model)] for key, c in expected.items() if standing.model in key
        )
        assert standing.wins == wins
        assert standing.votes == sum(sum(c) for c in games)


def tallies(project) -> set[tuple]:
    """The project's PairwiseTally rows that count a vote."""
    rows = PairwiseTally.objects.filter(project=project).values_list(
        "task_id",
        "prompt_id",
        "first_response_id",
        "second_response_id",
        *PairwiseTally.COLUMNS.values(),
    )
    return {row for row in rows if any(row[4:])}


def test_counts_follow_answers_as_they_are_replaced_and_tasks_as_they_are_deleted(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge, layouts=["pair"])
    pairs = list(Task.objects.filter(project=project, layout=Task.Layout.PAIR).order_by("id"))
    for task in pairs[:3]:  # an annotator changes their mind, twice on one task
        for choice in ("tie", "B") if task == pairs[0] else ("tie",):
            submission_create(
                task=task,
                annotator=annotators[0],
                feedback=FeedbackInput(
                    pairwise=PairwiseInput(choice, None if choice == "tie" else 3)
                ),
            )
    submission_create(
        task=pairs[1], judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("A", 1))
    )
    pairs[-1].delete()  # with its answers
    board = project_leaderboard(project=project, resamples=0)
    expected, (decided, first_wins) = python_count(project)
    assert board_counts(board) == expected
    assert (board.first_decided, board.first_wins) == (decided, first_wins)
    kept = tallies(project)
    pairwise_tally_rebuild(project=project)  # the migration's count from the votes
    assert tallies(project) == kept


def test_the_board_follows_responses_edited_or_added_after_it_was_read(arena):
    """The response table kept in memory (keyed on the trigger's ResponseEdit number)
    is read again after an edit by any means, and after votes on new responses."""
    project, annotators, judge = arena
    vote_all(project, annotators, judge, layouts=["pair"])
    project_leaderboard(project=project, resamples=0)
    Response.objects.filter(prompt__project=project, model_name="alpha").update(
        model_name="alpha 2"
    )
    board = project_leaderboard(project=project, resamples=0)
    assert board_counts(board) == python_count(project)[0]
    assert "alpha 2" in {m.model for m in board.models}
    prompt = PromptFactory(project=project)
    for model in ("delta", "alpha 2"):
        ResponseFactory(prompt=prompt, model_name=model)
    tasks_extend(project=project, prompt_ids=[prompt.pk])
    vote_all(project, annotators, judge, layouts=["pair"])
    board = project_leaderboard(project=project, resamples=0)
    assert board_counts(board) == python_count(project)[0]
    assert "delta" in {m.model for m in board.models}


def test_the_stronger_model_ranks_higher_with_intervals_and_online_elo(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge)
    board = project_leaderboard(project=project, resamples=100, min_votes=10, online_elo=True)
    order = [standing.model for standing in board.models]
    assert order == sorted(order, key=lambda model: -strength(model))
    for standing in board.models:
        assert standing.rating_low <= standing.rating <= standing.rating_high
        assert 1 <= standing.rank_low <= standing.rank <= standing.rank_high <= len(order)
        assert standing.online_elo is not None
        assert standing.few_votes == (standing.votes < 10)
    assert board.models[0].online_elo > board.models[-1].online_elo


def test_slices_keep_the_sources_and_the_prompt_category_asked_for(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge)
    people = project_leaderboard(project=project, sources="annotators", resamples=0)
    assert board_counts(people) == python_count(project, judges=False)[0]
    judges = project_leaderboard(project=project, sources="judges", resamples=0)
    assert board_counts(judges) == python_count(project, judges=True)[0]
    code = project_leaderboard(project=project, category=("topic", "code"), resamples=0)
    assert board_counts(code) == python_count(project, topic="code")[0]
    assert code.prompts == 3
    # Metadata values compare as text: {"level": 2} is the category level:2.
    level = project_leaderboard(project=project, category=("level", "2"), resamples=0)
    assert 0 < level.prompts <= 2
    none = project_leaderboard(project=project, category=("topic", "<b>poetry</b>"))
    assert none.models == [] and none.votes == 0


def test_rankings_count_as_their_pairwise_outcomes_only_when_asked(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge)
    without = project_leaderboard(project=project, resamples=0)
    with_rankings = project_leaderboard(project=project, include_rankings=True, resamples=0)
    # Six list tasks of three responses, two rankings each: 3 pairs per ranking, of which
    # those between two different models count.
    ranked_pairs = 0
    for task in Task.objects.filter(project=project, layout=Task.Layout.LIST):
        models = [r.model_name for r in task.ordered_responses()]
        ranked_pairs += 2 * sum(a != b for a, b in itertools.combinations(models, 2))
    assert with_rankings.votes == without.votes + ranked_pairs
    # Rankings say nothing about left and right.
    assert with_rankings.first_decided == without.first_decided


def test_rankings_alone_give_ratings_and_online_elo(arena):
    project, annotators, judge = arena
    vote_all(project, annotators, judge, layouts=["list"])
    assert project_leaderboard(project=project).models == []
    board = project_leaderboard(
        project=project, include_rankings=True, resamples=20, online_elo=True
    )
    assert board.models and board.first_decided == 0
    assert all(standing.online_elo is not None for standing in board.models)


def test_left_position_win_rate_is_the_share_of_decided_votes_won_by_the_first_shown(arena):
    project, annotators, judge = arena
    pair = Task.objects.filter(project=project, layout=Task.Layout.PAIR).first()
    for annotator, choice in zip(annotators, ["A", "A"], strict=True):
        submission_create(
            task=pair,
            annotator=annotator,
            feedback=FeedbackInput(pairwise=PairwiseInput(choice, 1)),
        )
    submission_create(
        task=pair, judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("B", 1))
    )
    other = Task.objects.filter(project=project, layout=Task.Layout.PAIR).last()
    submission_create(
        task=other, judge=judge, feedback=FeedbackInput(pairwise=PairwiseInput("tie"))
    )
    board = project_leaderboard(project=project, resamples=0)
    assert (board.first_decided, board.first_wins) == (3, 2)
    assert board.first_win_rate == pytest.approx(2 / 3)
    assert project_leaderboard(project=project, sources="judges", resamples=0).first_win_rate == 0


def test_only_a_current_answer_counts(arena):
    project, annotators, _ = arena
    pair = Task.objects.filter(project=project, layout=Task.Layout.PAIR).first()
    submission_create(
        task=pair, annotator=annotators[0], feedback=FeedbackInput(pairwise=PairwiseInput("A", 1))
    )
    submission_create(
        task=pair, annotator=annotators[0], feedback=FeedbackInput(pairwise=PairwiseInput("B", 1))
    )
    board = project_leaderboard(project=project, resamples=0)
    assert (board.first_decided, board.first_wins) == (1, 0)


def test_responses_without_a_model_and_a_model_against_itself_are_not_rated(arena):
    project, annotators, _ = arena
    prompt = PromptFactory(project=project)
    ResponseFactory(prompt=prompt, model_name="")
    ResponseFactory(prompt=prompt, model_name="solo")
    ResponseFactory(prompt=prompt, model_name="solo")
    tasks_extend(project=project, prompt_ids=[prompt.pk])
    pairs = list(Task.objects.filter(prompt=prompt, layout=Task.Layout.PAIR))
    for task in pairs:
        submission_create(
            task=task,
            annotator=annotators[0],
            feedback=FeedbackInput(pairwise=PairwiseInput("A", 1)),
        )
    board = project_leaderboard(project=project, resamples=0)
    assert board.models == [] and board.votes == 0
    assert board.first_decided == len(pairs) == 3  # they count for position
    other = Task.objects.filter(project=project, layout=Task.Layout.PAIR).exclude(prompt=prompt)
    submission_create(
        task=other.first(),
        annotator=annotators[0],
        feedback=FeedbackInput(pairwise=PairwiseInput("B", 1)),
    )
    board = project_leaderboard(project=project, resamples=0)
    assert len(board.models) == 2 and "solo" not in {m.model for m in board.models}
    assert sum(m.rating for m in board.models) == pytest.approx(2000)


def test_the_database_counts_each_response_s_length_and_markdown():
    prompt = PromptFactory()
    text = (
        "# Title\nSome **bold** and __more__ text.\n\n- one\n  * two\n12. three\n#no header\n**open"
    )
    response = ResponseFactory(prompt=prompt, text=text)
    fields = Response.objects.filter(pk=response.pk).values(
        "length", "markdown_headers", "markdown_list_items", "markdown_bold"
    )
    assert fields.get() == {
        "length": len(text),
        "markdown_headers": 1,
        "markdown_list_items": 3,
        "markdown_bold": 2,
    }
    assert Counter(Response.objects.filter(pk=response.pk).values_list("length", flat=True)) == {
        len(text): 1
    }


def test_texts_with_and_without_the_markers_a_count_needs_are_counted_alike():
    # The header and bold counts skip their regular expression for a text without '#',
    # '**' or '__'; a text with them elsewhere than in markdown still counts zero.
    prompt = PromptFactory()
    expected = {
        "plain prose. 1. Then more - and so on": (0, 0),
        "issue #14 and a*b**c": (0, 0),
        "##no space\n###### six\n####### seven": (1, 0),
        "snake__case and __bold__ and **also**": (0, 2),
    }
    for text in expected:
        ResponseFactory(prompt=prompt, text=text)
    counted = {
        text: (headers, bold)
        for text, headers, bold in Response.objects.filter(prompt=prompt).values_list(
            "text", "markdown_headers", "markdown_bold"
        )
    }
    assert counted == expected
