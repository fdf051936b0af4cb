"""Pure detection logic: no Faust, no Kafka, no clock.

A detector takes the event, the state it needs (plain dicts the caller keeps,
in a Faust table or in a test) and the time, and returns what to publish. The
agents in ``streams.agents`` only adapt Faust tables and topics to these calls.
"""
