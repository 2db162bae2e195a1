from agorabench.cli import app

app()
