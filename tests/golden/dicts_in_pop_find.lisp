(setq d {"a":1 "b":2})
(println (in d "a") (in d "z") (find d 2) (find d 9))
(pop d "a")
(println d (pop d "nope") (size d))
