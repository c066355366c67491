(println _args)
(println (type _current) (> (size _current) 0))
(println _pi _e)
(println (* 2 _pi))
