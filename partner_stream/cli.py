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
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .dev.broker import DEFAULT_HOST, DEFAULT_PORT, EmbeddedBroker, own_session_options, stop_process
from .durations import parse_duration

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
    from .dev.local import WORKER_COMMAND

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
    from partner_stream_web.auth import mint_tablet_token

    from .dev.local import WORKER_COMMAND, NotReady, local_worker_env, wait_ready
    from .dev.samples import generate_orders
    from .settings import DEV_JWT_SECRET, Settings

    # Broker and worker run in sessions of their own: a terminal's Ctrl-C or hang-up, sent to the whole foreground
    # process group, reaches only this process, which stops the worker first (it commits and leaves its group
    # while the broker still answers) and the broker last. Both die with this process if it is killed.
    embedded = EmbeddedBroker(port=broker_port, own_session=True)
    worker_process: subprocess.Popen[bytes] | None = None
    try:
        try:
            embedded.start()
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        shutil.rmtree(data_dir, ignore_errors=True)
        env = local_worker_env(
            broker_url=embedded.url,
            data_dir=data_dir,
            web_port=web_port,
            # Tablets sign in with tokens from `partner-stream token`, signed with the dev secret by default.
            jwt_secret=os.environ.get("PARTNER_STREAM_JWT_SECRET", DEV_JWT_SECRET),
            # The dev stack: a stand-in for CentralHub's accept/reject API, so the board's buttons work; and the
            # one place the published dev secret is accepted (with the embedded broker only).
            settings={"DEV_STACK": "1"},
            keep_user_settings=True,
        )
        with _signals_deferred():  # a Ctrl-C now must not leave a worker that the stop below does not know
            worker_process = subprocess.Popen(WORKER_COMMAND, env=env, **own_session_options())
        base = f"http://127.0.0.1:{web_port}"
        try:
            asyncio.run(wait_ready(base, worker_process, None, timeout=90.0))
        except NotReady as exc:
            raise click.ClickException(f"worker {exc}") from None
        dev_token = mint_tablet_token("1", env["PARTNER_STREAM_JWT_SECRET"])
        _print_banner(base, embedded.url, sample_orders, dev_token)
        if sample_orders:
            settings = Settings(**{"broker_url": embedded.url})
            asyncio.run(generate_orders(settings, ["1", "2", "3"], interval=interval))
        else:
            _wait_for_interrupt(lambda: worker_process.poll() is None)
    except KeyboardInterrupt:
        pass  # Ctrl-C, SIGTERM or SIGHUP (see _ctrl_c_stops) at any moment, even while starting: a clean stop
    finally:
        _stop_in_order(worker_process, embedded)
        _say("partner-stream dev stopped.")


@main.group()
def order() -> None:
    """Publish order events to Kafka, as the OrderService would (PascalCase JSON)."""


def _publish(action: str, **kwargs: str | None) -> None:
    from .dev.samples import OrderPublisher, order_created
    from .settings import get_settings

    settings = get_settings()

    async def run() -> None:
        async with OrderPublisher(settings) as publisher:
            if action == "create":
                body = order_created(kwargs["restaurant"] or "1", kwargs.get("order_id"), kwargs.get("customer"))
                await publisher.create(body)
                # The ID alone on stdout, so `id=$(partner-stream order create ...)` works; the sentence on stderr.
                click.echo(f"published OrderCreated for restaurant {body['RestaurantId']}:", err=True)
                click.echo(body["OrderId"])
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
    from partner_stream_web.auth import mint_operator_token, mint_tablet_token

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
    """Whole seconds of a token's lifetime, in the one duration grammar (partner_stream/durations.py)."""
    seconds = int(parse_duration(text.strip().lower()))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration like 3600, 90m, 12h or 7d")
    return seconds


@main.command("schemas")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write to a file instead of stdout.")
@click.option(
    "--announcements",
    is_flag=True,
    help="The events partner-stream publishes (OrderSeen, OrderUnseen) instead of the upstream ones.",
)
def schemas(out: Path | None, announcements: bool) -> None:
    """Print the JSON Schema of the upstream events (the contract with the OrderService), or of what we publish."""
    import json

    from .announcements import announcement_schemas
    from .events import json_schemas

    text = json.dumps(announcement_schemas() if announcements else json_schemas(), indent=2) + "\n"
    if out:
        out.write_text(text)
    else:
        click.echo(text, nl=False)


def _ctrl_c_stops() -> None:
    """Honour Ctrl-C/SIGINT even when started with it ignored, and stop the same way on SIGTERM and SIGHUP.

    A shell starts background jobs (``partner-stream dev &`` in a script, CI steps) with SIGINT ignored, and
    Python keeps an ignored SIGINT ignored: ``kill -INT`` would then do nothing. SIGTERM (``kill``, ``timeout``)
    and SIGHUP (the terminal closed) act as one Ctrl-C: ``timeout`` and a closing terminal may send theirs twice.
    A SIGHUP ignored at start (``nohup``) stays ignored.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    requested = False

    def like_ctrl_c(signum: int, frame: object) -> None:
        nonlocal requested
        if requested:
            return
        requested = True
        # While asyncio.run() runs, SIGINT's handler is its own: it cancels the main task, for a clean stop.
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    for signum in _stop_signals():
        if signum != signal.SIGINT:
            signal.signal(signum, like_ctrl_c)


def _stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a command: SIGINT, SIGTERM and SIGHUP, unless SIGHUP is ignored (``nohup``)."""
    hangup = () if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold stop signals back while the block runs (say, until a child is started *and* recorded), then act."""
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in _stop_signals()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])


def _stop_in_order(worker: subprocess.Popen[bytes] | None, embedded: EmbeddedBroker) -> None:
    """Stop the worker (SIGTERM: it commits and leaves its group while the broker answers), then the broker.

    Stop signals are ignored meanwhile: a second Ctrl-C, or ``timeout``'s second SIGTERM, must not cut this short
    and leave the broker running (SIGKILL still works: the children die with this process).
    """
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _stop_signals()}
    try:
        if worker is not None and worker.poll() is None:
            _say("Stopping the worker, then the broker...")
            stop_process(worker)
        embedded.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _say(text: str) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping cleanly matters more than saying so."""
    with contextlib.suppress(OSError):
        click.echo(text)


def _wait_for_interrupt(alive: Callable[[], bool]) -> None:
    """Block until Ctrl-C/SIGTERM/SIGHUP (see ``_ctrl_c_stops``) or until ``alive()`` turns false."""
    with contextlib.suppress(KeyboardInterrupt):
        while alive():
            time.sleep(0.2)


def _cli() -> str:
    """How to run this CLI from the current directory: the virtualenv's script is usually not on PATH."""
    script = Path(sys.executable).with_name("partner-stream")
    if not script.exists():
        return "partner-stream"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


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
        f"  more tokens               {_cli()} token --restaurant 42 | --operator",
        "  sample orders             " + ("restaurants 1-3, one every few seconds" if sample_orders else "off"),
        "  publish an order          PARTNER_STREAM_BROKER_URL="
        + broker_url
        + f" {_cli()} order create --restaurant 42",
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
