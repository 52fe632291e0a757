"""Streams: the Faust app, the wire models of the ingest topics, and the agents that
validate, normalize and window events before handing them to the sinks."""
