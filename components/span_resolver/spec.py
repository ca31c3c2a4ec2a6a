"""The span resolvers' channel key and node ids, defined once."""
ARTIFACTS_KEY = "artifacts"                        # every strategy's one channel
TRAINING_SPANS_ID = "training_spans_resolver"      # Augment's crops of the rolling window
EVALUATION_SPANS_ID = "evaluation_spans_resolver"  # ExampleGen's faces of the fixed set
EARLIER_STATISTICS_ID = "earlier_statistics_resolver"  # every span's statistics, for DriftCheck
FIRST_SCHEMA_ID = "first_schema_resolver"          # the first span's schema, for every span
