"""The model machinery: the factory, the offline model, the lean ChatOpenAI and its HTTP client."""
