"""Readers (file -> ModelSpec) and writers (Model -> file), one module per format."""
