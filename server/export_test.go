package server

// MetricSample is metricSample for the tests of package server_test.
var MetricSample = metricSample
