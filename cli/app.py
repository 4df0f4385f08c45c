"""Entry point of the ``boltzflow`` command."""

import typer

app = typer.Typer(help="boltzflow", no_args_is_help=True)


@app.command()
def version():
    """Print the version."""
    import boltzflow
    typer.echo(boltzflow.__version__)


def main():
    app()
