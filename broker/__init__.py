"""The local Apache Kafka broker (KRaft) that stands in for Event Hubs: jars, process, topics."""
