"""nnsqueeze: neural network coding (DeepCABAC), efficient formats, compressed training, explanations."""
