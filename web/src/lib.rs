//! Browser captioning app; built in its own issue.
