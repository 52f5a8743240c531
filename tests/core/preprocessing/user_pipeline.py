"""A user pipeline for the tests: receives the input PCollection, returns named outputs."""


def only_positive(records, config):
    import apache_beam as beam

    return {"positive": records | "OnlyPositive" >> beam.Filter(lambda r: r["label"] == "pos")}
