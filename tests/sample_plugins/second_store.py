"""A second store plugin: it wraps an in-memory sqlite store and counts creations."""

import click

from kcore import hookimpl

created = []


@hookimpl
def kcore_store(settings):
    from kcore.plugins.store_sqlite.backend import SqliteStore

    created.append(settings)
    return SqliteStore(":memory:")


@hookimpl
def kcore_add_options():
    return [click.Option(["--second-colour"], envvar="KCORE_SECOND_COLOUR", help="a test option")]


@hookimpl
def kcore_add_commands():
    @click.command("second-hello")
    @click.pass_context
    def hello(ctx):
        """Print the settings this plugin sees."""
        from kcore.cli import CliState

        state = ctx.find_object(CliState)
        click.echo(
            f"colour={state.settings.option('second_colour')} data_dir={state.settings.data_dir}"
        )

    return [hello]
