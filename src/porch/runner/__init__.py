"""The function-runner gRPC service: Porch's FunctionEvaluator proto plus health."""
