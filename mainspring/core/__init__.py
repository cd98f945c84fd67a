"""The pure core: ids, model, states, events, reducer, retry, schedules. No I/O."""
