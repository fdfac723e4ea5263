from wan_pipeline.cli.main import run

run()
