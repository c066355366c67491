(upper '("a"))
