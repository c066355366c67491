(println (size '(1 2 3)) (size "hello") (size {"a":1 "b":2}) (size ()) (size "") (size nil))
(println (length '(1 2)) (length "été"))
