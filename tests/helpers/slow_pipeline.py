"""A user pipeline that never finishes on its own (for the on_kill tests)."""

import time


def _forever(record):
    while True:
        time.sleep(1)
    yield record


def endless(records, config):
    import apache_beam as beam

    return records | "Forever" >> beam.FlatMap(_forever)
