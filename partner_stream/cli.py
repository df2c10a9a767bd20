"""The ``partner-stream`` command: embedded broker, dev stack, worker and order publishing.

The worker itself is Faust's: ``partner-stream worker`` is ``faust -A partner_stream worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from .broker import DEFAULT_HOST, DEFAULT_PORT, EmbeddedBroker, stop_process

DEV_DATA_DIR = Path(".partner-stream-dev")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """partner-stream: restaurant orders from Kafka to partner tablets, never losing one."""


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Loopback or interface to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def broker(host: str, port: int) -> None:
    """Run the embedded Kafka-protocol broker (Tansu, in memory) in the foreground."""
    _ctrl_c_stops()
    embedded = EmbeddedBroker(host=host, port=port)
    try:
        embedded.start()
        click.echo(f"Embedded broker (Tansu, in-memory) listening on {embedded.url}. Ctrl-C stops it.")
        click.echo("Workers need PARTNER_STREAM_BROKER_PROFILE=embedded against this broker.")
        _wait_for_interrupt(lambda: embedded.process is not None and embedded.process.poll() is None)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass  # Ctrl-C at any moment, even while starting, is a clean stop
    finally:
        embedded.stop()
    click.echo("Broker stopped; its topics are gone.")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a worker: same as ``faust -A partner_stream worker -l info [ARGS]``."""
    from .local import WORKER_COMMAND

    os.execv(sys.executable, [*WORKER_COMMAND, *ctx.args])


@main.command()
@click.option("--web-port", default=5003, show_default=True, type=int, help="Worker HTTP/WebSocket port.")
@click.option("--broker-port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--sample-orders/--no-sample-orders",
    default=True,
    show_default=True,
    help="Publish sample orders for restaurants 1-3 and resolve old ones.",
)
@click.option("--interval", default=3.0, show_default=True, help="Seconds between sample orders.")
@click.option(
    "--data-dir",
    default=DEV_DATA_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Worker state; wiped at start because the embedded broker starts empty.",
)
def dev(web_port: int, broker_port: int, sample_orders: bool, interval: float, data_dir: Path) -> None:
    """Run the whole service locally: embedded broker + one worker (+ sample orders)."""
    _ctrl_c_stops()
    from web.auth import mint_tablet_token

    from .local import WORKER_COMMAND, NotReady, wait_ready
    from .samples import generate_orders
    from .settings import DEV_JWT_SECRET, Settings

    embedded = EmbeddedBroker(port=broker_port)
    try:
        embedded.start()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        **os.environ,
        "PARTNER_STREAM_BROKER_URL": embedded.url,
        "PARTNER_STREAM_BROKER_PROFILE": "embedded",
        "PARTNER_STREAM_APP_DATADIR": str(data_dir),
        "PARTNER_STREAM_WEB_PORT": str(web_port),
        "PARTNER_STREAM_WEB_BIND": "127.0.0.1",
        "PARTNER_STREAM_WEB_HOST": "127.0.0.1",
        # Dev only: tablets sign in with tokens from `partner-stream token`, signed with the dev secret.
        "PARTNER_STREAM_JWT_SECRET": os.environ.get("PARTNER_STREAM_JWT_SECRET", DEV_JWT_SECRET),
        # Dev only: a stand-in for CentralHub's accept/reject API, so the board's buttons work.
        "PARTNER_STREAM_DEV_CENTRAL_HUB": "1",
        # The one place the published dev secret is accepted (with the embedded broker only).
        "PARTNER_STREAM_DEV_STACK": "1",
    }
    worker_process = subprocess.Popen(WORKER_COMMAND, env=env)
    base = f"http://127.0.0.1:{web_port}"
    try:
        try:
            asyncio.run(wait_ready(base, worker_process, None, timeout=90.0))
        except NotReady as exc:
            raise click.ClickException(f"worker {exc}") from None
        dev_token = mint_tablet_token("1", env["PARTNER_STREAM_JWT_SECRET"])
        _print_banner(base, embedded.url, sample_orders, dev_token)
        if sample_orders:
            settings = Settings(**{"broker_url": embedded.url})
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(generate_orders(settings, ["1", "2", "3"], interval=interval))
        else:
            _wait_for_interrupt(lambda: worker_process.poll() is None)
    finally:
        stop_process(worker_process)
        embedded.stop()
        click.echo("partner-stream dev stopped.")


@main.group()
def order() -> None:
    """Publish order events to Kafka, as the OrderService would (PascalCase JSON)."""


def _publish(action: str, **kwargs: str | None) -> None:
    from .samples import OrderPublisher, order_created
    from .settings import get_settings

    settings = get_settings()

    async def run() -> None:
        async with OrderPublisher(settings) as publisher:
            if action == "create":
                body = order_created(kwargs["restaurant"] or "1", kwargs.get("order_id"), kwargs.get("customer"))
                await publisher.create(body)
                click.echo(f"published OrderCreated {body['OrderId']} for restaurant {body['RestaurantId']}")
            elif action == "accept":
                await publisher.accept(kwargs["order_id"] or "", kwargs["restaurant"] or "")
                click.echo(f"published OrderAccepted {kwargs['order_id']}")
            else:
                await publisher.reject(kwargs["order_id"] or "", kwargs["restaurant"] or "", kwargs.get("reason"))
                click.echo(f"published OrderRejected {kwargs['order_id']}")

    asyncio.run(run())


@order.command("create")
@click.option("--restaurant", required=True, help="Restaurant ID.")
@click.option("--order-id", default=None, help="Order ID (default: a new GUID).")
@click.option("--customer", default=None)
def order_create(restaurant: str, order_id: str | None, customer: str | None) -> None:
    """Publish an OrderCreated with random items."""
    _publish("create", restaurant=restaurant, order_id=order_id, customer=customer)


@order.command("accept")
@click.option("--restaurant", required=True)
@click.argument("order_id")
def order_accept(restaurant: str, order_id: str) -> None:
    """Publish an OrderAccepted."""
    _publish("accept", restaurant=restaurant, order_id=order_id)


@order.command("reject")
@click.option("--restaurant", required=True)
@click.option("--reason", default=None)
@click.argument("order_id")
def order_reject(restaurant: str, order_id: str, reason: str | None) -> None:
    """Publish an OrderRejected."""
    _publish("reject", restaurant=restaurant, order_id=order_id, reason=reason)


@main.command()
@click.option("--restaurant", default=None, help="Restaurant the tablet serves (tablet token).")
@click.option("--operator", is_flag=True, help="Mint an operator token (role=operator) instead.")
@click.option("--ttl", default="12h", show_default=True, help="Lifetime: seconds, or with s/m/h/d suffix.")
def token(restaurant: str | None, operator: bool, ttl: str) -> None:
    """Mint a tablet or operator token (HS256) with PARTNER_STREAM_JWT_SECRET, or the dev secret if unset."""
    from web.auth import mint_operator_token, mint_tablet_token

    from .settings import DEV_JWT_SECRET, get_settings

    settings = get_settings()
    secret = settings.jwt_secret
    if not secret:
        secret = DEV_JWT_SECRET
        click.echo("(signed with the dev secret: only `partner-stream dev` workers accept it)", err=True)
    try:
        seconds = _parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    if operator == bool(restaurant):
        raise click.UsageError("give either --restaurant ID (tablet token) or --operator")
    if operator:
        click.echo(mint_operator_token(secret, ttl_seconds=seconds, role=settings.operator_role))
    else:
        click.echo(mint_tablet_token(restaurant, secret, ttl_seconds=seconds, claim=settings.jwt_restaurant_claim))


def _parse_duration(text: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    multiplier = units.get(text[-1:])
    number = text[:-1] if multiplier else text
    if not number.isdigit() or int(number) <= 0:
        raise ValueError(f"{text!r} is not a positive duration like 3600, 90m, 12h or 7d")
    return int(number) * (multiplier or 1)


@main.command("schemas")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write to a file instead of stdout.")
def schemas(out: Path | None) -> None:
    """Print the JSON Schema of the upstream events (the contract with the OrderService)."""
    import json

    from .events import json_schemas

    text = json.dumps(json_schemas(), indent=2) + "\n"
    if out:
        out.write_text(text)
    else:
        click.echo(text, nl=False)


def _ctrl_c_stops() -> None:
    """Honour Ctrl-C/SIGINT even when started with it ignored.

    A shell starts background jobs (``partner-stream dev &`` in a script, CI steps) with SIGINT ignored, and
    Python keeps an ignored SIGINT ignored: ``kill -INT`` would then do nothing.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait_for_interrupt(alive: object) -> None:
    """Block until Ctrl-C/SIGTERM or until ``alive()`` turns false."""
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop["now"] and alive():  # type: ignore[operator]
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_banner(base: str, broker_url: str, sample_orders: bool, token: str) -> None:
    lines = [
        "",
        "  partner-stream dev is ready",
        f"  broker (embedded Tansu)   {broker_url}",
        f"  pending orders (HTTP)     {base}/api/restaurants/1/pending-orders  (operator token)",
        f"  health / readiness        {base}/healthz  {base}/readyz",
        f"  order board               {base}/board/  (paste the tablet token below)",
        f"  SignalR hub               {base}/partnerhub?restaurantId=1",
        f"  plain WebSocket           {base.replace('http', 'ws')}/ws/partner?restaurantId=1&access_token=<token>",
        f"  tablet token (rest. 1)    {token}",
        "  more tokens               partner-stream token --restaurant 42 | --operator",
        "  sample orders             " + ("restaurants 1-3, one every few seconds" if sample_orders else "off"),
        "  publish an order          PARTNER_STREAM_BROKER_URL="
        + broker_url
        + " partner-stream order create --restaurant 42",
        "  Ctrl-C stops everything (the embedded broker keeps nothing).",
        "",
    ]
    width = max(len(line) for line in lines) + 2
    click.echo("=" * width)
    for line in lines:
        click.echo(line)
    click.echo("=" * width)


if __name__ == "__main__":
    main()
