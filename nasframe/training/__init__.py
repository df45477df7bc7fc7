"""Layer 5: training networks: the training step library evaluators share (`steps`, `step_options`,
`measure`), retraining a search's answer from scratch (`trainer`, `plan`, `recipes`) and exporting it.
"""
