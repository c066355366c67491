(println {"a" 1})
