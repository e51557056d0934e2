"""`ocssd-vfu image`: create, inspect and check OCSSD images (cli.py), with the
reports of the 2.0 (report20.py) and 1.2 (report12.py) formats. Beside the
command line, above the flash model: `serve` uses the 2.0 report to refuse a
broken image before opening it for writing."""
