"""``kcore ctl``: the everyday kubectl verbs, for machines without kubectl.

It talks HTTPS to an API server through :class:`kcore.client.ApiClient`, with the
credentials of a kubeconfig (default: the admin kubeconfig the daemon writes into the data
directory). Resource names resolve as kubectl resolves them (``po``, ``pods``, ``deploy``,
``deployment.apps``). An answer of the server that is an error is printed as kubectl prints
it, ``Error from server (<Reason>): <message>``; a local problem as ``error: <message>``;
either way one line and exit code 1.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kcore.api.registry import ResourceInfo
    from kcore.client import ApiClient

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class CtlError(Exception):
    """A local problem (bad manifest, unknown resource type): printed as ``error: ...``."""


@dataclass
class CtlOptions:
    kubeconfig: Path | None


def _data_dir(ctx: click.Context) -> Path:
    from kcore.cli import CliState
    from kcore.settings import default_data_dir

    state: Any = ctx.find_object(CliState)
    if state is None:
        # Under `python -m kcore.cli` the state is an instance of __main__.CliState, a
        # second copy of the class: find it by what it has.
        parent = ctx.parent
        while parent is not None and not hasattr(parent.obj, "data_dir"):
            parent = parent.parent
        state = parent.obj if parent is not None else None
    return Path(getattr(state, "data_dir", None) or default_data_dir())


def _kubeconfig(ctx: click.Context, given: Path | None) -> Path:
    if given is not None:
        return given
    options = ctx.find_object(CtlOptions)
    if options is not None and options.kubeconfig is not None:
        return options.kubeconfig
    return _data_dir(ctx) / "admin.kubeconfig"


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).strip()


def _report(error: BaseException) -> None:
    from kcore.client import from_server

    if from_server(error):
        reason = getattr(error, "reason", "") or "Unknown"
        click.echo(f"Error from server ({reason}): {_one_line(str(error))}", err=True)
    else:
        click.echo(f"error: {_one_line(str(error))}", err=True)


def _run(
    ctx: click.Context, kubeconfig: Path | None, work: Callable[[ApiClient], Awaitable[int]]
) -> None:
    """Run ``work`` with a client for the kubeconfig; exit 1 with one line on an error."""
    from kcore.client import ApiClient
    from kcore.errors import KcoreError

    path = _kubeconfig(ctx, kubeconfig)

    async def main() -> int:
        client = ApiClient.from_kubeconfig(path)
        try:
            return await work(client)
        finally:
            await client.close()

    try:
        code = asyncio.run(main())
    except (KcoreError, CtlError) as exc:
        _report(exc)
        code = 1
    if code:
        ctx.exit(code)


def _resolve(name: str) -> ResourceInfo:
    from kcore.api.registry import resolve

    info = resolve(name)
    if info is None:
        raise CtlError(f'the server doesn\'t have a resource type "{name}"')
    return info


def _type_name(info: ResourceInfo) -> str:
    """``pod``, ``deployment.apps``: how kubectl names a kind in its messages."""
    return f"{info.kind.lower()}.{info.group}" if info.group else info.kind.lower()


def _namespace(info: ResourceInfo, client: ApiClient, namespace: str | None) -> str | None:
    return (namespace or client.namespace) if info.namespaced else None


_kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The kubeconfig to use (default: <data-dir>/admin.kubeconfig).",
)
_namespace_option = click.option(
    "-n", "--namespace", help="The namespace (default: the kubeconfig context's)."
)


@click.group("ctl")
@_kubeconfig_option
@click.pass_context
def ctl(ctx: click.Context, kubeconfig: Path | None) -> None:
    """Talk to a kcore (or any Kubernetes) API server, as kubectl does."""
    ctx.obj = CtlOptions(kubeconfig)


# -- manifests ---------------------------------------------------------------------------------


def _loader() -> type:
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        """YAML as Kubernetes reads it: timestamps stay strings."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


@dataclass
class Manifest:
    source: str
    number: int
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source}: document {self.number}"


def _read(path: str) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", sys.stdin.read()
    try:
        return path, Path(path).read_text()
    except FileNotFoundError:
        raise CtlError(f'the path "{path}" does not exist') from None
    except OSError as exc:
        raise CtlError(f'cannot read "{path}": {exc.strerror or exc}') from None


def load_manifests(paths: Iterable[str]) -> list[Manifest]:
    """Every object of every file (``kind: List`` expanded), each checked for the fields a
    request needs; the first problem raises :class:`CtlError` naming file and document."""
    import yaml

    from kcore.api.registry import by_kind

    out: list[Manifest] = []
    for path in paths:
        source, text = _read(path)
        try:
            docs = list(yaml.load_all(text, Loader=_loader()))
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise CtlError(f"{source}: malformed YAML: {problem}{at}") from None
        for number, doc in enumerate(docs, start=1):
            if doc is None:
                continue
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            )
            for obj in items or []:
                m = Manifest(source, number, obj)
                if not isinstance(obj, dict):
                    raise CtlError(f"{m.where}: expected an object, got {type(obj).__name__}")
                missing = [f for f in ("apiVersion", "kind") if not obj.get(f)]
                if missing:
                    raise CtlError(f"{m.where}: {' and '.join(missing)} not set")
                if by_kind(str(obj["apiVersion"]), str(obj["kind"])) is None:
                    raise CtlError(
                        f'{m.where}: no matches for kind "{obj["kind"]}" in version '
                        f'"{obj["apiVersion"]}"'
                    )
                meta = obj.get("metadata")
                if not isinstance(meta, dict) or not meta.get("name"):
                    raise CtlError(f"{m.where}: metadata.name is required")
                out.append(m)
    if not out:
        raise CtlError("no objects passed to the command")
    return out


def _manifest_namespace(
    info: ResourceInfo, client: ApiClient, m: Manifest, flag: str | None
) -> str | None:
    if not info.namespaced:
        return None
    own = m.obj["metadata"].get("namespace")
    if own and flag and own != flag:
        raise CtlError(
            f'{m.where}: the namespace from the provided object "{own}" does not match the '
            f"namespace \"{flag}\". You must pass '--namespace={own}' to perform this operation."
        )
    return own or flag or client.namespace


# -- apply -------------------------------------------------------------------------------------


def apply_patch(
    kind: str, previous: dict[str, Any] | None, current: dict[str, Any], path: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The strategic merge patch that makes a live object follow ``current``: all of it, and
    ``null`` or ``$patch: delete`` for what ``previous`` (the last applied manifest) had and
    ``current`` no longer has. Fields set by others (not in ``previous``) are left alone."""
    patch = {
        key: _value_patch(kind, (previous or {}).get(key), value, (*path, key))
        for key, value in current.items()
    }
    for key in previous or {}:
        if key not in current:
            patch[key] = None
    return patch


def _value_patch(kind: str, old: Any, new: Any, path: tuple[str, ...]) -> Any:
    from kcore.patch import strategy_for

    if isinstance(new, dict):
        return apply_patch(kind, old if isinstance(old, dict) else None, new, path)
    if isinstance(new, list) and isinstance(old, list):
        rule = strategy_for(kind, path)
        if rule.merges and rule.merge_key:
            key = rule.merge_key
            olds = {item.get(key): item for item in old if isinstance(item, dict)}
            out = [
                _value_patch(kind, olds.get(item.get(key)), item, path)
                if isinstance(item, dict)
                else item
                for item in new
            ]
            kept = {item.get(key) for item in new if isinstance(item, dict)}
            out += [{key: k, "$patch": "delete"} for k in olds if k not in kept]
            return out
    return new


async def _apply_one(
    client: ApiClient, m: Manifest, namespace_flag: str | None, server_side: bool
) -> str:
    from kcore.errors import NotFound

    obj = m.obj
    info = client.resource(obj["apiVersion"], obj["kind"])
    name = obj["metadata"]["name"]
    ns = _manifest_namespace(info, client, m, namespace_flag)
    try:
        live = await client.get(info.api_version, info.kind, name, ns)
    except NotFound:
        live = None
    if server_side:
        result = await client.patch(info.api_version, info.kind, name, obj, "apply", ns)
    else:
        manifest = copy.deepcopy(obj)
        annotations = dict(manifest["metadata"].get("annotations") or {})
        annotations.pop(LAST_APPLIED, None)
        if annotations:
            manifest["metadata"]["annotations"] = annotations
        else:
            manifest["metadata"].pop("annotations", None)
        desired = copy.deepcopy(manifest)
        desired["metadata"].setdefault("annotations", {})[LAST_APPLIED] = (
            json.dumps(manifest, separators=(",", ":"), sort_keys=True) + "\n"
        )
        if ns is not None:
            desired["metadata"]["namespace"] = ns
        if live is None:
            await client.create(desired, namespace=ns)
            return "created"
        previous = None
        text = ((live["metadata"].get("annotations") or {}).get(LAST_APPLIED)) or ""
        if text:
            try:
                previous = json.loads(text)
            except ValueError:
                previous = None
        if isinstance(previous, dict) and ns is not None:
            previous.setdefault("metadata", {})["namespace"] = ns
        patch = apply_patch(info.kind, previous if isinstance(previous, dict) else None, desired)
        result = await client.patch(info.api_version, info.kind, name, patch, "strategic", ns)
    if live is None:
        return "created"
    same = result["metadata"].get("resourceVersion") == live["metadata"].get("resourceVersion")
    return "unchanged" if same else "configured"


@ctl.command("apply")
@click.option(
    "-f", "--filename", "files", multiple=True, required=True, help="Manifest file; - for stdin."
)
@click.option("--server-side", is_flag=True, help="Let the server merge (server-side apply).")
@_namespace_option
@_kubeconfig_option
@click.pass_context
def apply_cmd(
    ctx: click.Context,
    files: tuple[str, ...],
    server_side: bool,
    namespace: str | None,
    kubeconfig: Path | None,
) -> None:
    """Create or update the objects of manifests (YAML or JSON, several documents)."""

    async def work(client: ApiClient) -> int:
        from kcore.errors import KcoreError

        manifests = load_manifests(files)
        failed = 0
        for m in manifests:
            info = client.resource(m.obj["apiVersion"], m.obj["kind"])
            try:
                outcome = await _apply_one(client, m, namespace, server_side)
            except (KcoreError, CtlError) as exc:
                _report(exc)
                failed = 1
                continue
            click.echo(f"{_type_name(info)}/{m.obj['metadata']['name']} {outcome}")
        return failed

    _run(ctx, kubeconfig, work)


# -- get ---------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>" if value is None else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    return str(value)


def align(rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell and three spaces apart, as kubectl prints."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def table_lines(table: dict[str, Any], *, wide: bool, with_namespace: bool) -> list[str]:
    """The lines ``kubectl get`` prints for a server-side Table."""
    columns = [
        (i, col)
        for i, col in enumerate(table.get("columnDefinitions") or [])
        if wide or not col.get("priority")
    ]
    header = [str(col.get("name", "")).upper() for _, col in columns]
    rows = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        values = [_cell(cells[i]) if i < len(cells) else "" for i, _ in columns]
        if with_namespace:
            meta = (row.get("object") or {}).get("metadata") or {}
            values.insert(0, str(meta.get("namespace", "")))
        rows.append(values)
    if with_namespace:
        header.insert(0, "NAMESPACE")
    return align([header, *rows])


def _print_objects(objs: list[dict[str, Any]], info: ResourceInfo, output: str, single: bool):
    from kcore import api

    if output == "name":
        for obj in objs:
            click.echo(f"{_type_name(info)}/{obj['metadata']['name']}")
        return
    doc: dict[str, Any] = (
        objs[0]
        if single
        else {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": objs,
        }
    )
    if output == "json":
        click.echo(json.dumps(doc, indent=4))
    else:
        click.echo(api.encode_yaml(doc), nl=False)


@ctl.command("get")
@click.argument("resource")
@click.argument("name", required=False)
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", help="Field selector, e.g. status.phase=Running.")
@click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json", "name"]))
@_kubeconfig_option
@click.pass_context
def get_cmd(
    ctx: click.Context,
    resource: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    field_selector: str | None,
    output: str | None,
    kubeconfig: Path | None,
) -> None:
    """Show one object or a list: RESOURCE [NAME], or RESOURCE/NAME."""
    if name is None and "/" in resource:
        resource, name = resource.split("/", 1)

    async def work(client: ApiClient) -> int:
        from kcore.api.registry import RESOURCES

        category = [r for r in RESOURCES if resource in r.categories]
        if category and name is None and output in (None, "wide"):
            return await _get_category(
                client, category, namespace, all_namespaces, selector, output
            )
        info = _resolve(resource)
        ns = None if all_namespaces and name is None else _namespace(info, client, namespace)
        with_ns = info.namespaced and ns is None
        if output in (None, "wide"):
            table = await client.table(
                info.api_version, info.kind, name, ns, selector, field_selector
            )
            if not table.get("rows"):
                where = f" in {ns} namespace" if ns else ""
                click.echo(f"No resources found{where}.", err=True)
                return 0
            for line in table_lines(table, wide=output == "wide", with_namespace=with_ns):
                click.echo(line)
            return 0
        if name is not None:
            objs = [await client.get(info.api_version, info.kind, name, ns)]
        else:
            objs, _ = await client.list(
                info.api_version, info.kind, ns, selector, field_selector, limit=500
            )
        _print_objects(objs, info, output, single=name is not None)
        return 0

    _run(ctx, kubeconfig, work)


async def _get_category(
    client: ApiClient,
    infos: list[ResourceInfo],
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    output: str | None,
) -> int:
    """``get all``: a table per kind that has objects, names prefixed with their type."""
    printed = False
    ns = None
    for info in infos:
        ns = None if all_namespaces else _namespace(info, client, namespace)
        table = await client.table(info.api_version, info.kind, None, ns, selector)
        if not table.get("rows"):
            continue
        for row in table["rows"]:
            row["cells"][0] = f"{_type_name(info)}/{row['cells'][0]}"
        if printed:
            click.echo("")
        for line in table_lines(table, wide=output == "wide", with_namespace=ns is None):
            click.echo(line)
        printed = True
    if not printed:
        click.echo(f"No resources found{f' in {ns} namespace' if ns else ''}.", err=True)
    return 0


# -- describe ----------------------------------------------------------------------------------


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _age(timestamp: str) -> str:
    from kcore.apiserver.tables import human_duration

    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(datetime.now(UTC) - then)


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    rows = [
        ["Type", "Reason", "Age", "From", "Message"],
        ["----", "------", "---", "----", "-------"],
    ]
    for event in sorted(events, key=_event_time):
        source = event.get("source") or {}
        origin = source.get("component") or event.get("reportingComponent") or ""
        if source.get("host"):
            origin = f"{origin}, {source['host']}"
        age = _age(_event_time(event))
        if (event.get("count") or 1) > 1:
            age = f"{age} (x{event['count']})"
        rows.append(
            [
                str(event.get("type") or ""),
                str(event.get("reason") or ""),
                age,
                origin,
                _one_line(event.get("message") or ""),
            ]
        )
    return ["Events:", *("  " + line for line in align(rows))]


@ctl.command("describe")
@click.argument("resource")
@click.argument("name", required=False)
@_namespace_option
@_kubeconfig_option
@click.pass_context
def describe_cmd(
    ctx: click.Context,
    resource: str,
    name: str | None,
    namespace: str | None,
    kubeconfig: Path | None,
) -> None:
    """Show one object in full, and the events about it: RESOURCE NAME."""
    if name is None and "/" in resource:
        resource, name = resource.split("/", 1)
    if not name:
        raise click.UsageError("describe needs a RESOURCE and a NAME")

    async def work(client: ApiClient) -> int:
        from kcore import api

        info = _resolve(resource)
        ns = _namespace(info, client, namespace)
        obj = await client.get(info.api_version, info.kind, name, ns)
        uid = obj["metadata"].get("uid", "")
        events, _ = await client.list("v1", "Event", ns, field_selector=f"involvedObject.uid={uid}")
        click.echo(api.encode_yaml(obj), nl=False)
        click.echo("")
        for line in event_lines(events):
            click.echo(line)
        return 0

    _run(ctx, kubeconfig, work)


# -- delete ------------------------------------------------------------------------------------


@ctl.command("delete")
@click.argument("resource", required=False)
@click.argument("names", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects of a manifest.")
@_namespace_option
@click.option("--ignore-not-found", is_flag=True, help="A missing object is not an error.")
@click.option("--grace-period", type=int, help="Seconds a pod gets to stop (0: at once).")
@click.option(
    "--cascade",
    type=click.Choice(["background", "foreground", "orphan"]),
    default="background",
    show_default=True,
    help="What happens to the object's dependents.",
)
@_kubeconfig_option
@click.pass_context
def delete_cmd(
    ctx: click.Context,
    resource: str | None,
    names: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    ignore_not_found: bool,
    grace_period: int | None,
    cascade: str,
    kubeconfig: Path | None,
) -> None:
    """Delete objects: RESOURCE NAME..., RESOURCE/NAME..., or -f FILE."""
    words = ([resource] if resource else []) + list(names)
    targets: list[tuple[str, str]] = []
    if words and all("/" in w for w in words):
        targets = [(w.split("/", 1)[0], w.split("/", 1)[1]) for w in words]
    elif len(words) >= 2 and not any("/" in w for w in words):
        targets = [(words[0], n) for n in words[1:]]
    elif words:
        raise click.UsageError("give RESOURCE NAME... or RESOURCE/NAME..., not a mix")
    if not targets and not files:
        raise click.UsageError("delete needs a RESOURCE and a NAME, or -f FILE")

    async def work(client: ApiClient) -> int:
        from kcore.errors import KcoreError, NotFound

        plan: list[tuple[ResourceInfo, str | None, str]] = []
        for kind_name, name in targets:
            info = _resolve(kind_name)
            plan.append((info, _namespace(info, client, namespace), name))
        if files:
            for m in load_manifests(files):
                info = client.resource(m.obj["apiVersion"], m.obj["kind"])
                ns = _manifest_namespace(info, client, m, namespace)
                plan.append((info, ns, m.obj["metadata"]["name"]))
        failed = 0
        for info, ns, name in plan:
            try:
                await client.delete(
                    info.api_version,
                    info.kind,
                    name,
                    ns,
                    propagation_policy=cascade.capitalize(),  # type: ignore[arg-type]
                    grace_period_seconds=grace_period,
                )
            except NotFound as exc:
                if not ignore_not_found:
                    _report(exc)
                    failed = 1
                continue
            except KcoreError as exc:
                _report(exc)
                failed = 1
                continue
            click.echo(f'{_type_name(info)} "{name}" deleted')
        return failed

    _run(ctx, kubeconfig, work)


# -- logs --------------------------------------------------------------------------------------


@ctl.command("logs")
@click.argument("pod")
@click.option("-c", "--container", help="The container (default: the only one).")
@click.option("--tail", type=int, help="Only the last N lines.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option("-p", "--previous", is_flag=True, help="The previous instance of the container.")
@_namespace_option
@_kubeconfig_option
@click.pass_context
def logs_cmd(
    ctx: click.Context,
    pod: str,
    container: str | None,
    tail: int | None,
    timestamps: bool,
    previous: bool,
    namespace: str | None,
    kubeconfig: Path | None,
) -> None:
    """Print the log of a pod's container."""
    if pod.startswith(("pod/", "pods/", "po/")):
        pod = pod.split("/", 1)[1]

    async def work(client: ApiClient) -> int:
        text = await client.logs(
            pod,
            namespace,
            container=container,
            tail_lines=tail,
            timestamps=timestamps,
            previous=previous,
        )
        click.echo(text, nl=not text.endswith("\n") and bool(text))
        return 0

    _run(ctx, kubeconfig, work)


__all__ = ["LAST_APPLIED", "CtlError", "apply_patch", "ctl", "load_manifests", "table_lines"]
