"""``lightrelay channel …``: upstream channels and their keys."""

from __future__ import annotations

import time
from typing import Any

import click

from lightrelay.cli.common import _run, main
from lightrelay.settings import Settings, load_settings


@main.group()
def channel() -> None:
    """Upstream channels."""


@channel.command("add")
@click.argument("name")
@click.option("--base-url", default="", help="openai: what an OpenAI SDK takes as base_url, e.g. "
              "https://api.openai.com/v1; azure: https://NAME.openai.azure.com; anthropic and gemini: optional")
@click.option("--api-key", "api_keys", multiple=True,
              help="the upstream's API key (stored encrypted); give it several times for several keys, used in turn")
@click.option("--api-keys-file", type=click.File("r"), default=None,
              help="a file of API keys, one a line (# comments allowed)")
@click.option("--models", required=True, help="public names, each optionally =upstream-name: a,b=upstream-b "
                                               "(azure: =deployment-name)")
@click.option("--priority", type=int, default=0, show_default=True, help="higher is tried first")
@click.option("--weight", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option("--type", "type_", type=click.Choice(["openai", "anthropic", "gemini", "azure", "local"]),
              default="openai", show_default=True)
@click.option("--api-version", default=None,
              help="azure: the api-version (default LIGHTRELAY_AZURE_API_VERSION); anthropic: anthropic-version")
@click.option("--timeout", type=click.FloatRange(0.1, 86_400), default=None, help="total seconds per call")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 3600), default=None, help="seconds to connect")
@click.option("--first-byte-timeout", type=click.FloatRange(0.1, 3600), default=None,
              help="seconds until the reply (a stream's first event) starts; then the next channel is tried")
@click.option("--idle-timeout", type=click.FloatRange(0.1, 3600), default=None,
              help="seconds a stream may go quiet between events")
def channel_add(name: str, base_url: str, api_keys: tuple[str, ...], api_keys_file: Any, models: str,
                priority: int, weight: int, type_: str, api_version: str | None, timeout: float | None,
                connect_timeout: float | None, first_byte_timeout: float | None, idle_timeout: float | None) -> None:
    """Add an upstream channel."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    keys = [*api_keys, *(channels.read_key_file(api_keys_file.read()) if api_keys_file else [])]

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await channels.add_channel(engine, KeyBox(settings.secret()), name=name, base_url=base_url,
                                   api_keys=keys, api_version=api_version,
                                   models=channels.parse_models(models), type=type_,
                                   priority=priority, weight=weight, timeout=timeout,
                                   connect_timeout=connect_timeout, first_byte_timeout=first_byte_timeout,
                                   idle_timeout=idle_timeout)

    _run(go, notify="channels")
    click.echo(f"added channel {name}")


@channel.command("list")
def channel_list() -> None:
    """List channels (API keys masked)."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[dict]:  # noqa: ANN001
        box = KeyBox(settings.secret())
        return [channels.public_view(r, box) for r in await channels.load_channels(engine)]

    rows = _run(go)
    if not rows:
        click.echo("no channels: the built-in local model serves the default model names")
    _echo_local_status()
    for r in rows:
        models = ",".join(k if k == v else f"{k}={v}" for k, v in r["models"].items())
        keys = " ".join(f"#{k['n']}={k['key']}" + (" (retired)" if k["retired"] else "") for k in r["keys"])
        click.echo(f"{r['name']:16} {r['type']:6} {'enabled ' if r['enabled'] else 'disabled'} "
                   f"prio={r['priority']} weight={r['weight']} {r['base_url']} "
                   f"key{'s' if len(r['keys']) > 1 else ''}={keys or '-'} models={models}")
        for k in r["keys"]:
            if k["retired"]:
                when = f" at {k['retired_at']:%Y-%m-%d %H:%M:%S}" if k["retired_at"] else ""
                click.echo(f"{'':16}   key #{k['n']} retired{when}: {k['retired']} "
                           f"(lightrelay channel enable-key {r['name']} {k['n']})")


def _echo_local_status() -> None:
    """The built-in model's state as the running relay last reported it (its child process)."""
    from lightrelay.providers.local import describe_status, read_status

    status = read_status(load_settings().local_status_file)
    if status is not None:
        click.echo(f"{'builtin-local':16} local  {describe_status(status)} (relay pid {status['relay_pid']})")


def _set_enabled(name: str, enabled: bool) -> None:
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> None:  # noqa: ANN001
        await channels.update_channel(engine, KeyBox(settings.secret()), name=name, enabled=enabled)

    _run(go, notify="channels")
    click.echo(f"{'enabled' if enabled else 'disabled'} channel {name}")


@channel.command("disable")
@click.argument("name")
def channel_disable(name: str) -> None:
    """Stop routing calls to a channel."""
    _set_enabled(name, False)


@channel.command("enable")
@click.argument("name")
def channel_enable(name: str) -> None:
    """Route calls to a channel again."""
    _set_enabled(name, True)


@channel.command("enable-key")
@click.argument("name")
@click.argument("key", metavar="KEY")
def channel_enable_key(name: str, key: str) -> None:
    """Put a retired API key back in use: KEY is its number in `channel list`, the key itself, or all."""
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[int]:  # noqa: ANN001
        return await channels.enable_key(engine, KeyBox(settings.secret()), name=name, which=key)

    numbers = _run(go, notify="channels")
    click.echo(f"channel {name}: key {', '.join(f'#{n}' for n in numbers)} back in use")


@channel.command("models")
@click.argument("name")
@click.option("--apply", "apply_", is_flag=True, help="set the channel's models to exactly these (each by its own name)")
def channel_models(name: str, apply_: bool) -> None:
    """Ask the upstream which models it serves (OpenAI /models, Anthropic /v1/models, Gemini models.list)."""
    from lightrelay.channel_test import upstream_models
    from lightrelay.security import KeyBox
    from lightrelay.services import channels

    async def go(settings: Settings, engine) -> list[str]:  # noqa: ANN001
        names = await upstream_models(settings, engine, name=name)
        if apply_ and names:
            await channels.update_channel(engine, KeyBox(settings.secret()), name=name,
                                          models={m: m for m in names})
        return names

    names = _run(go, notify="channels" if apply_ else None)
    for n in names:
        click.echo(n)
    if apply_:
        click.echo(f"channel {name} now serves {len(names)} models" if names else
                   f"the upstream listed no models; channel {name} is unchanged")


@channel.command("test")
@click.argument("name")
def channel_test(name: str) -> None:
    """Send one tiny chat call to a channel and show the latency."""
    from lightrelay.channel_test import test_channel

    async def go(settings: Settings, engine) -> tuple[float, str]:  # noqa: ANN001
        return await test_channel(settings, engine, name=name)

    started = time.perf_counter()
    ms, reply = _run(go)
    click.echo(f"ok: {name} answered in {ms:.0f} ms ({(time.perf_counter() - started) * 1000:.0f} ms in all): "
               f"{reply[:60]!r}")


# -- usage ---------------------------------------------------------------------
