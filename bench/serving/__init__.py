"""Deployment scenarios through MLPerf LoadGen (``mlcommons-loadgen``): a prepared backend served
to LoadGen's SingleStream, MultiStream, Server and Offline scenarios, with and without dynamic
batching, and its logged outputs checked against the harness's own accuracy."""
