"""The pipeline spec: model (Structs), load (parse, expand, validate), patch, redact."""
