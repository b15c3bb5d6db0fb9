"""The ``kcore`` command line: one click group, a subcommand per verb.

Global options shared by every command: ``--plugins`` (``KCORE_PLUGINS``), ``--data-dir``
(``KCORE_DATA_DIR``) and the logging options. Options that plugins contribute through
``kcore_add_options`` work on every command, before or after the subcommand's name, and
plugins add subcommands through ``kcore_add_commands``. Errors end the command with one
line on stderr and a non-zero exit code, not a traceback.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

import kcore
from kcore.cluster import admin_kubeconfig_option, init_cmd, join_cmd
from kcore.ctl import ctl
from kcore.errors import KcoreError, PluginError
from kcore.plugin_host import DEFAULT_PLUGINS, PluginHost, installed_plugins, parse_plugin_list
from kcore.settings import Settings, default_data_dir

OPTIONS_META_KEY = "kcore.plugin_options"

#: slot or contribution hook -> the conformance suite module that checks it
CONFORMANCE_SUITES: dict[str, str] = {
    "store": "kcore.conformance.suites.test_store",
    "runtime": "kcore.conformance.suites.test_runtime",
    "network": "kcore.conformance.suites.test_network",
    "volume_sources": "kcore.conformance.suites.test_volumes",
    "controllers": "kcore.conformance.suites.test_controllers",
}


@dataclass
class CliState:
    """Shared by every command through ``ctx.find_object(CliState)``."""

    plugin_names: tuple[str, ...]
    data_dir: Path
    options: dict[str, Any] = field(default_factory=dict)
    _host: PluginHost | None = None

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = PluginHost(self.plugin_names)
        return self._host

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, options=dict(self.options))


def _prescan(args: Sequence[str], flag: str, envvar: str | None) -> list[str] | None:
    """Values of ``flag`` in raw ``args`` (before click parses them), else of ``envvar``."""
    values: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            break
        if arg == flag:
            values.append(next(it, ""))
        elif arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1 :])
    if values:
        return values
    if envvar and os.environ.get(envvar):
        return [os.environ[envvar]]
    return None


def _plugin_options(host: PluginHost) -> list[click.Option]:
    """The options that the loaded plugins contribute, marked so that their values are moved out
    of the callback's arguments into ``ctx.meta`` (see :func:`_absorb_plugin_options`)."""
    out: list[click.Option] = []
    seen: set[str] = set()
    for opt in host.options():
        if opt.name in seen:
            continue
        seen.add(opt.name)
        opt = copy.copy(opt)
        opt._kcore_plugin = True  # type: ignore[attr-defined]
        out.append(opt)
    return out


def _absorb_plugin_options(ctx: click.Context, values: dict[str, Any]) -> None:
    """Move plugin option values from a callback's arguments into ``ctx.meta``, which the
    whole context tree shares: a value given after the subcommand overrides one before."""
    store = ctx.meta.setdefault(OPTIONS_META_KEY, {})
    for param in ctx.command.params:
        if not getattr(param, "_kcore_plugin", False) or param.name not in values:
            continue
        value = values.pop(param.name)
        source = ctx.get_parameter_source(param.name)
        explicit = source is not None and source != click.core.ParameterSource.DEFAULT
        if value is not None and (explicit or store.get(param.name) is None):
            store[param.name] = value
        else:
            store.setdefault(param.name, None)


def _with_plugin_options(cmd: click.Command, options: list[click.Option]) -> click.Command:
    cmd = copy.copy(cmd)
    cmd.params = [*cmd.params, *options]
    inner = cmd.callback

    def callback(**kwargs: Any) -> Any:
        _absorb_plugin_options(click.get_current_context(), kwargs)
        return inner(**kwargs) if inner is not None else None

    cmd.callback = callback
    return cmd


class KcoreGroup(click.Group):
    """Adds plugin-contributed options and subcommands before click parses anything."""

    def make_context(self, info_name, args, parent=None, **extra):  # type: ignore[override]
        raw = list(args)
        plugins = _prescan(raw, "--plugins", "KCORE_PLUGINS")
        names = list(parse_plugin_list(plugins[-1] if plugins else None))
        # `kcore conformance --plugin X` takes X's options too.
        names += [n for n in _prescan(raw, "--plugin", None) or [] if n not in names]
        host = PluginHost(names)
        self._plugin_opts = _plugin_options(host)
        self._plugin_cmds = {c.name: c for c in host.commands()}
        taken = set(self._plugin_cmds) & set(self.commands)
        if taken:
            raise PluginError(
                f"plugins add commands that already exist: {', '.join(sorted(taken))}"
            )
        self.params = [p for p in self.params if not getattr(p, "_kcore_plugin", False)]
        self.params.extend(self._plugin_opts)
        return super().make_context(info_name, args, parent=parent, **extra)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *getattr(self, "_plugin_cmds", {})})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = self.commands.get(name) or getattr(self, "_plugin_cmds", {}).get(name)
        if cmd is None:
            return None
        return _with_plugin_options(cmd, getattr(self, "_plugin_opts", []))


@click.group(
    cls=KcoreGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--plugins",
    envvar="KCORE_PLUGINS",
    metavar="A,B,...",
    help=f"Plugins to load: entry-point names or dotted module paths. Default: {','.join(DEFAULT_PLUGINS)}.",
)
@click.option(
    "--data-dir",
    envvar="KCORE_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Node and cluster state (default: {default_data_dir()}).",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto: JSON unless stderr is a terminal.",
)
@click.option("--log-level", default="info", show_default=True)
@click.version_option(kcore.__version__, prog_name="kcore")
@click.pass_context
def cli(
    ctx: click.Context,
    plugins: str | None,
    data_dir: Path | None,
    log_format: str,
    log_level: str,
    **plugin_options: Any,
) -> None:
    """kcore: a small, real Kubernetes, built from plugins.

    With no command, runs the daemon (``kcore daemon``) on its defaults."""
    from kcore.logs import configure

    _absorb_plugin_options(ctx, plugin_options)
    configure(log_format, log_level)
    state = CliState(
        plugin_names=parse_plugin_list(plugins),
        data_dir=data_dir or default_data_dir(),
        options=ctx.meta.setdefault(OPTIONS_META_KEY, {}),
    )
    ctx.obj = state
    if ctx.invoked_subcommand is None:
        ctx.invoke(daemon_cmd)


@cli.command("daemon")
@click.option("--bind-address", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port", default=6443, show_default=True, type=int, help="HTTPS port (0: any free port)."
)
@admin_kubeconfig_option
@click.option(
    "--compaction-interval",
    default=300.0,
    show_default=True,
    type=float,
    help="Seconds between store compactions (0: never).",
)
@click.option(
    "--node-agent/--no-node-agent",
    default=None,
    help="Run a node agent (and the one-node scheduler) in the daemon. Default: when a "
    "runtime plugin is loaded.",
)
@click.option("--node-name", help="The node's name (default: the host name).")
@click.option(
    "--controllers/--no-controllers",
    default=True,
    show_default=True,
    help="Run the controller manager (the loaded plugins' controllers, under leader election).",
)
@click.option(
    "--service-cluster-ip-range",
    default="10.96.0.0/12",
    show_default=True,
    callback=lambda ctx, param, value: _check_range(value, "IPRange"),
    help="The CIDR that Service cluster IPs are allocated from.",
)
@click.option(
    "--service-node-port-range",
    default="30000-32767",
    show_default=True,
    callback=lambda ctx, param, value: _check_range(value, "PortRange"),
    help="The ports that NodePort Services are allocated from.",
)
@click.pass_obj
def daemon_cmd(
    state: CliState,
    bind_address: str = "127.0.0.1",
    port: int = 6443,
    kubeconfig: Path | None = None,
    compaction_interval: float = 300.0,
    node_agent: bool | None = None,
    node_name: str | None = None,
    controllers: bool = True,
    service_cluster_ip_range: str = "10.96.0.0/12",
    service_node_port_range: str = "30000-32767",
) -> None:
    """Run the API server on the loaded store (HTTPS, admin kubeconfig in the data dir)
    and, by default, a node agent that runs the pods on the loaded runtime."""
    from kcore.daemon import DaemonOptions, run

    state.host.slot_owner("store")
    if node_agent is None:
        node_agent = "runtime" in {slot for i in state.host.info() for slot in i.slots}
    if node_agent:
        state.host.slot_owner("runtime")
    run(
        state.host,
        state.settings,
        DaemonOptions(
            bind_address,
            port,
            kubeconfig,
            compaction_interval,
            node_agent,
            node_name,
            controllers=controllers,
            service_cluster_ip_range=service_cluster_ip_range,
            service_node_port_range=service_node_port_range,
        ),
    )


def _check_range(value: str, kind: str) -> str:
    """A Service range option's value, or one clear error line."""
    from kcore.apiserver import services

    try:
        getattr(services, kind)(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@cli.command("node")
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="How to reach the API server (its address, CA and credentials).",
)
@click.option("--node-name", help="The node's name (default: the host name).")
@click.pass_obj
def node_cmd(state: CliState, kubeconfig: Path, node_name: str | None = None) -> None:
    """Run a node agent alone against a (remote) API server: it registers this node and
    runs the pods bound to it on the loaded runtime, network and volume plugins."""
    import asyncio

    from kcore.daemon import serve_node

    state.host.slot_owner("runtime")
    asyncio.run(serve_node(state.host, state.settings, kubeconfig, node_name))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plugins_cmd(state: CliState, as_json: bool) -> None:
    """List the loaded plugins, the slot each fills, the conformance suites each passed
    (or failed) in this installation's last ``kcore conformance`` run, and the hooks each
    implements."""
    from kcore.conformance.report import load_results, suites_cell, suites_of

    infos = state.host.info()
    results = load_results(state.data_dir)
    if as_json:
        entries = [{**i.as_dict(), "suites": suites_of(results, i.name, i.version)} for i in infos]
        click.echo(json.dumps(entries, indent=2))
        return
    installed = installed_plugins()
    rows = [("NAME", "VERSION", "SLOTS", "SUITES", "HOOKS")]
    for i in infos:
        suites = suites_cell(suites_of(results, i.name, i.version))
        rows.append((i.name, i.version, ",".join(i.slots) or "-", suites, ",".join(i.hooks)))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    others = sorted(set(installed) - {i.name for i in infos})
    if others:
        click.echo(f"\ninstalled, not loaded: {', '.join(others)}")


@cli.command(
    "conformance",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("--plugin", "plugin_names", multiple=True, required=True, help="Plugin under test.")
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Choice(sorted(CONFORMANCE_SUITES)),
    help="Run only these suites (default: every suite that applies to the plugin).",
)
@click.option("--junitxml", type=click.Path(dir_okay=False), help="Write a JUnit XML report.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def conformance_cmd(
    ctx: click.Context,
    plugin_names: tuple[str, ...],
    suites: tuple[str, ...],
    junitxml: str | None,
    pytest_args: tuple[str, ...],
) -> None:
    """Run the conformance suites that apply to a plugin; extra arguments go to pytest."""
    import importlib.util

    import pytest

    from kcore.conformance.report import SuiteRecorder, format_summary, record_results

    state: CliState = ctx.obj
    host = PluginHost(plugin_names)
    offered_by: dict[str, set[str]] = {}
    for name in plugin_names:
        # A contribution suite is named after its hook: kcore_volume_sources -> volume_sources.
        offered_by[name] = {
            *host.slots_of(name),
            *(h.removeprefix("kcore_") for h in host.hooks_of(name)),
        }
    offered = set().union(*offered_by.values())
    applicable = [s for s in CONFORMANCE_SUITES if s in offered]
    chosen = list(suites) or applicable
    missing = [s for s in chosen if s not in offered]
    if missing:
        raise click.UsageError(f"{', '.join(plugin_names)} offers no {', '.join(missing)}")
    if not chosen:
        raise PluginError(
            f"no conformance suite applies to {', '.join(plugin_names)} "
            f"(it implements: {', '.join(sorted(offered)) or 'no hooks'})"
        )
    with tempfile.TemporaryDirectory(
        prefix="kcore-conformance-", ignore_cleanup_errors=True
    ) as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        # Test ids and JUnit class names relative to the suites: test_store.py::TestStore::...
        rootdir = importlib.util.find_spec("kcore.conformance.suites").submodule_search_locations[0]  # type: ignore[union-attr]
        # The suites run their own event loops: pytest-asyncio, if installed, has no part.
        args = ["-c", str(ini), "--rootdir", rootdir, "-p", "no:cacheprovider", "-p", "no:asyncio"]
        args += ["-q", "-o", f"junit_suite_name=kcore conformance {' '.join(plugin_names)}"]
        args += ["--basetemp", str(Path(tmp) / "tmp")]  # the tests' own, removed afterwards
        # kcore is imported already, so pytest cannot rewrite it for its pytest11 plugin.
        args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
        for name in plugin_names:
            args += ["--kcore-plugin", name]
        for key, value in state.options.items():
            if value is not None:
                args += ["--kcore-option", f"{key}={value}"]
        if junitxml:
            args += ["--junitxml", str(Path(junitxml).resolve())]
        args += ["--pyargs", *(CONFORMANCE_SUITES[s] for s in chosen), *pytest_args]
        click.echo(f"kcore conformance: {', '.join(plugin_names)}: suites {', '.join(chosen)}")
        recorder = SuiteRecorder({CONFORMANCE_SUITES[s]: s for s in chosen})
        code = pytest.main(args, plugins=[recorder])
    if code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        versions = {i.name: i.version for i in host.info()}
        tested = {
            name: (versions.get(name, "unknown"), [s for s in chosen if s in offered_by[name]])
            for name in plugin_names
        }
        results = list(recorder.results.values())
        click.echo(format_summary(results, {n: v for n, (v, _) in tested.items()}, chosen))
        partial = any(a.startswith(_SELECTING_ARGS) or "::" in a for a in pytest_args)
        try:
            record_results(state.data_dir, tested, results, partial=partial)
        except OSError as exc:
            click.echo(f"kcore conformance: results not recorded: {exc}", err=True)
    ctx.exit(int(code))


#: pytest arguments that run only some of a suite's tests: such a run is recorded as partial.
_SELECTING_ARGS = (
    "-k",
    "-m",
    "-x",
    "--exitfirst",
    "--maxfail",
    "--deselect",
    "--lf",
    "--last-failed",
    "--sw",
    "--stepwise",
)


@cli.command("validate")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.File("r"),
    help="Manifest file (YAML or JSON, several documents allowed); - for stdin.",
)
@click.option("--strict", is_flag=True, help="Refuse unknown fields.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["name", "yaml", "json"]),
    default="name",
    show_default=True,
    help="What to print for each valid object: its name, or the defaulted object.",
)
def validate_cmd(files: tuple[Any, ...], strict: bool, output: str) -> None:
    """Decode, default and validate manifests offline, as the API server would."""
    from kcore import api

    failed = False
    for fh in files:
        try:
            docs = api.decode_yaml_documents(fh.read(), strict=strict)
        except KcoreError as exc:
            click.echo(f"{fh.name}: {exc}", err=True)
            failed = True
            continue
        for number, obj in docs:
            if isinstance(obj, KcoreError):
                click.echo(f"{fh.name}: {obj}", err=True)
                failed = True
                continue
            api.apply_defaults(obj)
            try:
                api.validate(obj, require_namespace=False)
            except KcoreError as exc:
                click.echo(f"{fh.name}: document {number}: {exc}", err=True)
                failed = True
                continue
            if output == "yaml":
                click.echo("---\n" + api.encode_yaml(obj), nl=False)
            elif output == "json":
                click.echo(api.encode_json(obj).decode())
            else:
                kind = type(obj).__name__.lower()
                click.echo(f"{kind}/{obj.metadata.name or obj.metadata.generate_name} valid")
    if failed:
        raise SystemExit(1)


cli.add_command(ctl)
cli.add_command(init_cmd)
cli.add_command(join_cmd)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``kcore`` script: one clear line per error, never a traceback."""
    try:
        code = cli.main(args=argv, prog_name="kcore", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    except KcoreError as exc:
        click.echo(f"kcore: error: {exc}", err=True)
        code = 2 if isinstance(exc, PluginError) else 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy, so that there is one CliState class.
    from kcore.cli import main as _main

    _main()
