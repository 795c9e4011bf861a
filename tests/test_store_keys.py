"""``flowyard keys`` through the storage port: the same rows as the SQLite file functions."""

from pathlib import Path

from flowyard.storage import store_keys
from flowyard.storage.port import Store
from flowyard.storage.projects import ALL_SCOPES, list_keys_sync, revoke_key_sync
from flowyard.storage.sqlite import Database


async def test_create_list_and_revoke_through_the_port_match_the_file_functions(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "k.db")

    async def work(store: Store) -> tuple[str, str]:
        first = await store_keys.create_key(store, "shop", ["jobs:read"])
        second = await store_keys.create_key(store, "shop", list(ALL_SCOPES), admin=True)
        keys = await store_keys.list_keys(store, "shop")
        assert [key.id for key, _ in keys] == [second.record.id, first.record.id]
        assert {name for _, name in keys} == {"shop"}
        key, project, already = await store_keys.revoke(store, first.record.id)
        assert (project, already) == ("shop", False) and key.revoked_at is not None
        again = await store_keys.revoke(store, first.record.id)
        assert again[2] is True and again[0].revoked_at == key.revoked_at
        return first.record.id, second.record.id

    first_id, second_id = await store_keys.with_store(Database(db), work)
    listed = list_keys_sync(db, "shop")  # the file functions read the same rows
    assert [(key.id, key.admin, key.revoked_at is not None) for key, _ in listed] == [
        (second_id, True, False),
        (first_id, False, True),
    ]
    assert revoke_key_sync(db, first_id)[2] is True


async def test_an_unknown_project_or_key_is_a_lookup_error(tmp_path: Path) -> None:
    async def work(store: Store) -> list[str]:
        errors = []
        for call in (store_keys.list_keys(store, "nobody"), store_keys.revoke(store, "key_x")):
            try:
                await call
            except LookupError as exc:
                errors.append(str(exc.args[0]))
        return errors

    errors = await store_keys.with_store(Database(str(tmp_path / "k.db")), work)
    assert errors == ["no project named 'nobody'", "no key key_x"]
