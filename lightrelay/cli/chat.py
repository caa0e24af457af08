"""``lightrelay chat``: a client of a running relay."""

from __future__ import annotations

import asyncio
import sys

import click

from lightrelay.cli.common import _settings, main


@main.command()
@click.argument("prompt")
@click.option("--model", default=None, help="model name (default: the relay's default)")
@click.option("--stream", is_flag=True, help="print the reply as it is generated")
@click.option("--url", default=None, help="the relay's address (default LIGHTRELAY_URL or http://127.0.0.1:8080)")
@click.option("--token", "token_value", default=None, help="API token (default LIGHTRELAY_TOKEN)")
def chat(prompt: str, model: str | None, stream: bool, url: str | None, token_value: str | None) -> None:
    """Ask a running relay, over the light protocol."""
    from lightrelay.client import LightError
    from lightrelay.client import chat as light_chat

    settings = _settings()
    base = url or settings.url or f"http://{settings.host}:{settings.port}"
    tok = token_value or (settings.token.get_secret_value() if settings.token else None)
    if not tok:
        raise click.ClickException("no token: pass --token sk-… or set LIGHTRELAY_TOKEN")
    import aiohttp

    try:
        asyncio.run(light_chat(base, tok, prompt, model=model, stream=stream, out=sys.stdout))
    except LightError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, aiohttp.ClientError) as exc:
        raise click.ClickException(f"cannot reach the relay at {base}: {exc}") from None
    if stream:
        click.echo("")


if __name__ == "__main__":
    main()
