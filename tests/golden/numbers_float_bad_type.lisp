(float '(1))
