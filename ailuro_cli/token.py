"""``ailuro token issue|inspect``: the embedded issuer's tokens, from the dispatcher host.

``issue`` signs with the dispatcher's key file (``--auth-dir``), so only an account that can read
it — the dispatcher's, an admin on its host — can issue tokens (an RPC for admins comes later).
``inspect`` validates a token against that issuer's JWKS (or any JWKS file) and prints its claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ailuro_cli._common import EXIT_USAGE, console, fail, reported_errors

token_app = typer.Typer(
    help="Issue and inspect bearer tokens of the dispatcher's embedded issuer.", no_args_is_help=True
)

_AUTH_DIR = typer.Option(
    Path("~/.ailuro/auth"), "--auth-dir", envvar="AILURO_AUTH_DIR", help="The dispatcher's --auth-dir."
)


@token_app.command("issue")
def issue(
    user: str = typer.Option(..., "--user", help="The token's subject (the job owner)."),
    vo: str = typer.Option(..., "--vo", help="The VO it acts for (WLCG group /<vo>)."),
    role: list[str] = typer.Option([], "--role", help="user, production, pilot, factory or admin (repeatable)."),
    queue: list[str] = typer.Option([], "--queue", help="A queue a pilot/factory token serves (repeatable)."),
    lifetime: str = typer.Option("12h", "--lifetime", help="How long it is valid: 3600, 30m, 12h, 7d."),
    auth_dir: Path = _AUTH_DIR,
    issuer: str = typer.Option("ailuro-embedded", "--issuer", help="The dispatcher's embedded issuer name."),
    audience: str = typer.Option("ailuro", "--audience", help="The audience the dispatcher requires."),
) -> None:
    """Print a signed token (needs read access to the dispatcher's signing key)."""
    from dispatcher.auth import issuer as embedded

    with reported_errors():
        try:
            lifetime_s = embedded.parse_duration(lifetime)
            key = embedded.load_key(embedded.IssuerFiles(state_dir=auth_dir.expanduser()))
            token = embedded.issue(
                key, issuer=issuer, audience=audience, user=user, vo=vo, roles=role, queues=queue, lifetime_s=lifetime_s
            )
        except (ValueError, embedded.IssuerError) as exc:
            raise fail(str(exc), code=EXIT_USAGE) from None
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
