"""``ailuro token issue|inspect``: the embedded issuer's tokens.

``issue`` asks the dispatcher (``--server``) through the admin-only ``IssueToken`` RPC, with the
caller's admin token: the dispatcher signs and records the issuance in its audit log. With an
explicit ``--auth-dir`` it signs offline with the key file instead — kept for bootstrap and
recovery on the dispatcher's host (before the first start, while no dispatcher runs, or when the
admin token is lost), where reading the key file already is all power; such tokens are not in
the audit log, and the command says so on stderr.
``inspect`` validates a token against that issuer's JWKS (or any JWKS file) and prints its claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ailuro_cli._common import EXIT_USAGE, console, fail, make_client, reported_errors

token_app = typer.Typer(
    help="Issue and inspect bearer tokens of the dispatcher's embedded issuer.", no_args_is_help=True
)

_AUTH_DIR = typer.Option(
    Path("~/.ailuro/auth"), "--auth-dir", envvar="AILURO_AUTH_DIR", help="The dispatcher's --auth-dir."
)


@token_app.command("issue")
def issue(
    ctx: typer.Context,
    user: str = typer.Option(..., "--user", help="The token's subject (the job owner)."),
    vo: str = typer.Option(..., "--vo", help="The VO it acts for (WLCG group /<vo>)."),
    role: list[str] = typer.Option([], "--role", help="user, production, pilot, factory or admin (repeatable)."),
    queue: list[str] = typer.Option([], "--queue", help="A queue a pilot/factory token serves (repeatable)."),
    lifetime: str = typer.Option("12h", "--lifetime", help="How long it is valid: 3600, 30m, 12h, 7d (at most 30d)."),
    auth_dir: Path | None = typer.Option(
        None,
        "--auth-dir",
        help="Sign OFFLINE with the key in the dispatcher's --auth-dir (bootstrap/recovery; not audited). "
        "Without it the dispatcher issues the token (needs an admin token).",
    ),
    issuer: str = typer.Option("ailuro-embedded", "--issuer", help="Offline only: the embedded issuer name."),
    audience: str = typer.Option("ailuro", "--audience", help="Offline only: the audience the dispatcher requires."),
) -> None:
    """Print a signed token (admin only: through the dispatcher, or offline with --auth-dir)."""
    from dispatcher.auth import issuer as embedded

    with reported_errors():
        try:
            lifetime_s = embedded.parse_duration(lifetime)
        except ValueError as exc:
            raise fail(str(exc), code=EXIT_USAGE) from None
        if auth_dir is None:
            with make_client(ctx) as client:
                answer = client.admin.issue_token(
                    user=user, vo=vo, roles=role, queues=queue, lifetime_s=max(1, int(lifetime_s))
                )
            typer.echo(answer.token)
            return
        try:
            key = embedded.load_key(embedded.IssuerFiles(state_dir=auth_dir.expanduser()))
            token = embedded.issue(
                key, issuer=issuer, audience=audience, user=user, vo=vo, roles=role, queues=queue, lifetime_s=lifetime_s
            )
        except (ValueError, embedded.IssuerError) as exc:
            raise fail(str(exc), code=EXIT_USAGE) from None
        typer.echo("note: signed offline with the key file; this token is not in the audit log", err=True)
        typer.echo(token)


@token_app.command("inspect")
def inspect(
    token: str = typer.Argument(..., help="The token ('-': read it from stdin)."),
    auth_dir: Path = _AUTH_DIR,
    jwks: Path | None = typer.Option(None, "--jwks", help="Validate against this JWKS file instead of --auth-dir's."),
    issuer: str = typer.Option("ailuro-embedded", "--issuer", help="The issuer it must come from."),
    audience: str = typer.Option("ailuro", "--audience", help="The audience it must carry."),
) -> None:
    """Validate a token and print its claims and the principal it maps to (JSON)."""
    import dataclasses
    import sys

    import jwt

    from dispatcher.auth.config import AuthConfig, IssuerConfig
    from dispatcher.auth.issuer import IssuerFiles
    from dispatcher.auth.tokens import AuthError, TokenValidator

    with reported_errors():
        text = (sys.stdin.read() if token == "-" else token).strip()
        source = jwks or IssuerFiles(state_dir=auth_dir.expanduser()).jwks
        config = AuthConfig(mode="token")
        validator = TokenValidator(config, (IssuerConfig(issuer=issuer, jwks=str(source), audience=audience),))
        try:
            principal = validator.validate(text)
        except AuthError as exc:
            raise fail(f"token refused: {exc.reason}", code=1) from None
        claims = jwt.decode(text, options={"verify_signature": False})  # verified just above
        console.print_json(json.dumps({"principal": dataclasses.asdict(principal), "claims": claims}))


def register(app: typer.Typer) -> None:
    """Add ``ailuro token``."""
    app.add_typer(token_app, name="token")
