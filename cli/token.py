"""``cityunion token issue|revoke``: API bearer tokens bound to an identity."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from cli.common import UserError, add_data_dir, add_ledger, connect_args
from cli.serve import add_database, settings_of


def register(sub: Any) -> None:
    p = sub.add_parser("token", help="issue or revoke API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = tsub.add_parser(
        "issue", help="issue a token for a city and role; the token is the last "
                      "line printed")
    add_data_dir(issue)
    add_ledger(issue)
    issue.add_argument("--city", required=True,
                       help="organisation: Center or a member city, e.g. Kunshan")
    issue.add_argument("--role", required=True,
                       help="center_admin, city_admin, department, terminal, "
                            "auditor")
    issue.add_argument("--department", help="department code (role department)")
    issue.add_argument("--ttl-days", type=float, default=30.0,
                       help="lifetime in days (default: 30)")
    issue.set_defaults(run=run_issue)
    revoke = tsub.add_parser("revoke", help="revoke a token by its id; the running "
                                            "server refuses it from then on")
    add_data_dir(revoke)
    add_database(revoke)
    revoke.add_argument("jti", help="the token id printed by `token issue`")
    revoke.set_defaults(run=run_revoke)


def _user_error(e: Any) -> UserError:
    accepted = f" (accepted: {e.accepted})" if e.accepted else ""
    return UserError(f"{e.field}: {e.message}{accepted}")


def run_issue(args: argparse.Namespace) -> int:
    from api.tokens import KEY_FILE, TokenError, TokenService
    from ledger.msp import Wallet

    # An embedded node's wallet, or the token key a `serve` (any ledger) made.
    if not (Wallet(args.data_dir).exists or (args.data_dir / KEY_FILE).exists()):
        raise UserError(f"no API node in {args.data_dir} (run `cityunion serve` "
                        "or `cityunion demo` there first, or pass --data-dir)")
    try:
        principal, token = TokenService(args.data_dir).issue(
            args.city, args.role, args.department, timedelta(days=args.ttl_days))
    except TokenError as e:
        raise _user_error(e) from None
    from ledger.connect import ensure_identity

    connection = connect_args(args, read_only=True)
    try:  # the identity the API will submit as, enrolled now if it is new
        user = ensure_identity(connection, principal.city, principal.role.value,
                               principal.department)
    finally:
        connection.close()
    print(f"identity:   {principal.label} (wallet: {principal.city}/{user})")
    print(f"token id:   {principal.jti}  (revoke: cityunion token revoke "
          f"{principal.jti})")
    print(f"expires:    {principal.expires_at.isoformat()}")
    print("use it as:  Authorization: Bearer <the next line>")
    print(token)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from api.tokens import TokenError, TokenService
    from projections.db import Database

    db = Database(settings_of(args).read_model_target)
    try:
        fresh = TokenService(args.data_dir, db).revoke(args.jti)
    except TokenError as e:
        raise _user_error(e) from None
    finally:
        db.close()
    print(f"token {args.jti} {'revoked' if fresh else 'was already revoked'}")
    return 0
