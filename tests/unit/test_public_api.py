import pipeteer


def test_public_surface_is_pinned() -> None:
    assert pipeteer.__all__ == sorted(pipeteer.__all__)
    assert pipeteer.__all__ == [
        "App",
        "AvroDecimal",
        "BlobError",
        "CodecError",
        "ConfigError",
        "DecodeError",
        "InexistentItem",
        "Pipeline",
        "PipelineQueues",
        "PipeteerError",
        "Queue",
        "QueueError",
        "QueueKV",
        "ReadQueue",
        "RoutingError",
        "SchemaError",
        "SpecError",
        "StageError",
        "ValueTypeError",
        "Workflow",
        "WorkflowQueues",
        "Wrapped",
        "WriteQueue",
        "connect",
        "make_queues",
    ]
    for name in pipeteer.__all__:
        assert getattr(pipeteer, name) is not None
