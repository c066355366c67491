(dictionary "a" 1 "b")
