; maybe with a function as the last argument: it is called with the error
(setq z 0)
(println (maybe (/ 10 z) (lambda (err) "caught")))
(println (maybe (/ 10 z) (lambda (err) (+ "caught: " err))))
(println (maybe (/ 10 z) (lambda (err) (maybe err))))
(println (maybe (/ 10 2) (lambda (err) "caught")))
(setq handler (lambda (e) (list 'handled (string e))))
(println (maybe (car 1) handler))
; with several forms, they run in order until one fails
(println (maybe (setq w 1) (throw "boom") (setq w 2) 'fallback) w)
; a non-function fallback is returned as it is
(println (maybe (/ 10 z) "plain") (maybe (/ 10 z) '(a b)))
