"""The listing's url_prefix on SQLite and PostgreSQL: a range an index serves,
[prefix, the least text after every text starting with it), in code point
order, whatever characters the prefix ends with."""

from __future__ import annotations

import pytest

from ntorque.store import Store
from ntorque.store.listing import after_prefix
from ntorque.tasks import TaskFilter
from tests.factories import NOW, spec

URLS = [
    "http://a.example/x",
    "http://a.example/x\ud7ff",
    "http://a.example/x\ud7ff/more",
    "http://a.example/x\ue000",
    "http://a.example/x\U0010ffff",
    "http://a.example/x\U0010ffff/more",
    "http://a.example/y",
]


@pytest.mark.parametrize(
    "prefix",
    [
        "http://a.example/x",
        "http://a.example/x\ud7ff",  # the next code point is a surrogate: a 500 before
        "http://a.example/x\U0010ffff",  # there is no next code point: nothing matched before
        "http://a.example/",
        "h",
        "\U0010ffff",
        "http://a.example/z",
    ],
)
async def test_url_prefix_matches_exactly_the_urls_it_starts(store: Store, prefix: str) -> None:
    made = {(await store.tasks.insert(spec(url=url), NOW)).id: url for url in URLS}
    chosen = TaskFilter(app_id=None, url_prefix=prefix)
    listed = await store.tasks.listing.page(chosen, 100, None)
    assert sorted(task.url for task in listed) == sorted(
        url for url in made.values() if url.startswith(prefix)
    )
    assert len(await store.tasks.listing.ids(chosen, 100, None)) == len(listed)


@pytest.mark.parametrize(
    ("prefix", "after"),
    [
        ("ab", "ac"),
        ("a\ud7ff", "a\ue000"),  # over the surrogates, which no text holds
        ("a\U0010ffff", "b"),
        ("a\U0010ffff\U0010ffff", "b"),
        ("\U0010ffff", None),  # every text from the prefix on
    ],
)
def test_the_range_ends_after_every_text_with_the_prefix(prefix: str, after: str | None) -> None:
    assert after_prefix(prefix) == after
