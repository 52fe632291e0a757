"""Sources: the city simulator, replay importers and the Kafka publisher."""
