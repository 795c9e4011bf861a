"""``flowyard keys create|list|revoke``: API keys, straight in the database file."""

import argparse
import json
import os
import sqlite3
from typing import Any

from flowyard.cli.common import DEFAULTS, described, env, fail, print_table
from flowyard.clock import rfc3339
from flowyard.errors import Unavailable
from flowyard.storage.files import create_private
from flowyard.storage.projects import (
    ALL_SCOPES,
    SCOPES,
    ApiKey,
    create_key_sync,
    list_keys_sync,
    revoke_key_sync,
)
from flowyard.storage.stores import is_postgres, shown


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a project (if needed) and a key")
    _add_db(create)
    create.add_argument(
        "--project", required=True, help="the project's name, created if new (required)"
    )
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        choices=SCOPES,
        help=described("a scope of the key; repeat for more", " ".join(ALL_SCOPES)),
    )
    create.add_argument(
        "--admin", action="store_true", help=described("an admin key (/admin/...)", "off")
    )
    create.add_argument(
        "--name", default="", help=described("a name for the key", "the project's name")
    )
    create.set_defaults(run=create_key)
    listing = key_commands.add_parser("list", help="list keys, newest first (never the secrets)")
    _add_db(listing)
    listing.add_argument(
        "--project", help=described("only this project's keys (by name)", "every project")
    )
    _add_json(listing, "a JSON array instead of a table")
    listing.set_defaults(run=list_keys)
    revoke = key_commands.add_parser(
        "revoke", help="revoke a key (a running server refuses it within a second)"
    )
    _add_db(revoke)
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (key_...)")
    _add_json(revoke, "the key record as JSON")
    revoke.set_defaults(run=revoke_key)


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=env("db", DEFAULTS.db),
        help=described("the SQLite file, or a postgresql:// URL", DEFAULTS.db, "db"),
    )


def _add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=described(what, "off"))


def create_key(args: argparse.Namespace) -> int:
    """``flowyard keys create``: the key alone is the last line on stdout; stderr names the
    file it went to, with a warning when that file is new (a key in the wrong folder's new
    database would be refused by the server)."""
    where = shown(args.db)
    try:
        new_file = create_private(args.db)
        created = create_key_sync(
            args.db, args.project, args.scopes or list(ALL_SCOPES), admin=args.admin, name=args.name
        )
    except (OSError, sqlite3.Error, Unavailable) as exc:
        fail(f"cannot use the database {where}: {getattr(exc, 'strerror', None) or exc}")
        return 1
    if new_file:
        fail(
            f"warning: created a new database {where}"
            " (a server using another file will not know this key)"
        )
    record = created.record
    fail(f"key {record.id} written to {where}")
    print(f"project {record.project_id} key {record.id} scopes {' '.join(record.scopes)}")
    print(created.key)
    return 0


_KEY_COLUMNS = (
    "id",
    "project",
    "name",
    "scopes",
    "admin",
    "created_at",
    "last_used_at",
    "revoked_at",
)


def _key_record(key: ApiKey, project: str) -> dict[str, Any]:
    return {
        "id": key.id,
        "project_id": key.project_id,
        "project": project,
        "name": key.name,
        "scopes": list(key.scopes),
        "admin": key.admin,
        "created_at": rfc3339(key.created_at),
        "last_used_at": rfc3339(key.last_used_at),
        "revoked_at": rfc3339(key.revoked_at),
    }


def _print_keys(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(records, indent=2))
        return
    rows = []
    for record in records:
        cells = {
            **record,
            "scopes": ",".join(record["scopes"]),
            "admin": "yes" if record["admin"] else "no",
        }
        rows.append([cells[column] for column in _KEY_COLUMNS])
    print_table(_KEY_COLUMNS, rows)


def _no_database(db: str) -> bool:
    if is_postgres(db) or os.path.exists(db):
        return False
    fail(f"no database at {db}")
    return True


def list_keys(args: argparse.Namespace) -> int:
    """``flowyard keys list``: every key (of one project), newest first, straight from the file."""
    db, project, as_json = args.db, args.project, args.json
    if _no_database(db):
        return 1
    try:
        keys = list_keys_sync(db, project)
    except LookupError as exc:
        fail(str(exc.args[0]))
        return 1
    _print_keys([_key_record(key, name) for key, name in keys], as_json)
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    """``flowyard keys revoke``: revoke in the file. A running server refuses the key within a
    second (the lifetime of its key cache). Revoking a revoked key changes nothing."""
    db, key_id, as_json = args.db, args.key_id, args.json
    if _no_database(db):
        return 1
    try:
        key, project, already = revoke_key_sync(db, key_id)
    except LookupError as exc:
        fail(str(exc.args[0]))
        return 1
    if already:
        fail(f"key {key_id} was already revoked")
    record = _key_record(key, project)
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        _print_keys([record], as_json=False)
    return 0
