"""Applications and the secrets every node shares, on SQLite and PostgreSQL."""

from __future__ import annotations

from ntorque.store import Store
from tests.factories import HASH_A, HASH_B, HASH_C, NOW, spec

# -- applications ------------------------------------------------------------


async def test_applications(store: Store) -> None:
    assert await store.apps.count() == 0
    assert await store.apps.list() == []

    alpha = await store.apps.create("alpha", HASH_A, NOW)
    assert alpha["id"] > 0
    assert {k: v for k, v in alpha.items() if k != "id"} == {
        "name": "alpha",
        "key_hash": HASH_A,
        "active": True,
        "created": NOW,
        "admin": False,
        "signing_secret": None,
        "previous_signing_secret": None,
        "target_policy": None,
    }
    beta = await store.apps.create("beta", HASH_B, NOW + 1)
    assert await store.apps.count() == 2
    assert await store.apps.list() == [alpha, beta]
    assert await store.apps.by_key_hash(HASH_A) == alpha
    assert await store.apps.by_key_hash(HASH_C) is None
    assert await store.apps.by_name("beta") == beta
    assert await store.apps.by_name("gamma") is None

    assert await store.apps.update("alpha", active=False) is True
    assert await store.apps.by_key_hash(HASH_A) == {**alpha, "active": False}
    assert await store.apps.update("beta", key_hash=HASH_C) is True  # a rotated key
    assert await store.apps.by_key_hash(HASH_B) is None
    assert await store.apps.by_key_hash(HASH_C) == {**beta, "key_hash": HASH_C}
    assert await store.apps.update("gamma", active=False) is False
    assert await store.apps.count() == 2

    task = await store.tasks.insert(spec(app_id=beta["id"]), NOW)
    assert task.app_id == beta["id"]


async def test_application_secrets(store: Store) -> None:
    made = iter(["whsec_made1", "whsec_made2"])
    alpha = await store.apps.create("alpha", HASH_A, NOW, "whsec_first")
    assert alpha["signing_secret"] == "whsec_first"
    assert await store.apps.signing_secrets(alpha["id"], lambda: next(made)) == ("whsec_first",)
    assert await store.apps.rotate_signing_secret("alpha", "whsec_second") is True
    assert await store.apps.signing_secrets(alpha["id"], lambda: next(made)) == (
        "whsec_second",
        "whsec_first",
    )
    assert await store.apps.finish_rotation("alpha") is True
    assert await store.apps.signing_secrets(alpha["id"], lambda: next(made)) == ("whsec_second",)
    assert await store.apps.rotate_signing_secret("gamma", "whsec_x") is False
    assert await store.apps.finish_rotation("gamma") is False

    beta = await store.apps.create("beta", HASH_B, NOW)  # no secret: one is made, once
    assert await store.apps.signing_secrets(beta["id"], lambda: next(made)) == ("whsec_made1",)
    assert await store.apps.signing_secrets(beta["id"], lambda: next(made)) == ("whsec_made1",)
    assert await store.apps.signing_secrets(999_999, lambda: next(made)) == ()

    assert await store.apps.replace_key_hash(HASH_B, HASH_C) is True
    assert await store.apps.by_key_hash(HASH_C) == {**beta, "key_hash": HASH_C,
                                                   "signing_secret": "whsec_made1"}  # fmt: skip
    assert await store.apps.replace_key_hash(HASH_B, HASH_C) is False


async def test_application_names_are_unique(store: Store) -> None:
    assert await store.apps.create("alpha", HASH_A, NOW) is not None
    assert await store.apps.create("alpha", HASH_B, NOW) is None  # the name is taken
    assert await store.apps.create("beta", HASH_A, NOW) is None  # so is the key hash
    assert await store.apps.count() == 1


async def test_a_server_secret_is_made_once_and_shared(store: Store) -> None:
    first = await store.apps.server_secret("cookie_secret", lambda: "one", NOW)
    second = await store.apps.server_secret("cookie_secret", lambda: "two", NOW + 1)
    assert first == second == "one"
    assert await store.apps.server_secret("other", lambda: "three", NOW) == "three"
