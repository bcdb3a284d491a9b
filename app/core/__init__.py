"""The service: routing by id prefix, fan-out, paging, readings chunks, consumption, corrections, the fleet
(shared tier) glue."""
