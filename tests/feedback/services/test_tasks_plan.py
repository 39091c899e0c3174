import pytest

from feedback.services import tasks_plan
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def test_every_kind_gives_singles_all_pairs_and_a_ranking_list():
    project = ProjectFactory(ranking_size=4)
    plan = tasks_plan(project, [1, 2, 3])
    assert plan == [
        ("single", [1]),
        ("single", [2]),
        ("single", [3]),
        ("pair", [1, 2]),
        ("pair", [1, 3]),
        ("pair", [2, 3]),
        ("list", [1, 2, 3]),
    ]


@pytest.mark.parametrize(
    ("count", "sizes"), [(4, [2, 2]), (6, [3, 3]), (7, [3, 2, 2]), (2, [2]), (1, [])]
)
def test_rankings_split_into_lists_of_at_most_ranking_size_and_never_one(count, sizes):
    project = ProjectFactory(
        collects_pairwise=False,
        collects_rating=False,
        collects_spans=False,
        collects_free_text=False,
        ranking_size=3,
    )
    plan = tasks_plan(project, list(range(count)))
    assert [len(ids) for _, ids in plan] == sizes
    assert sorted(i for _, ids in plan for i in ids) == (list(range(count)) if sizes else [])


def test_pairwise_only_project_with_rationale_gets_pairs_only():
    project = ProjectFactory(
        collects_rating=False,
        collects_ranking=False,
        collects_spans=False,
        asks_critique=False,
        asks_rewrite=False,
        asks_rationale=True,
    )
    assert {layout for layout, _ in tasks_plan(project, [1, 2])} == {"pair"}
