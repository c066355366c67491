(push 5 1)
