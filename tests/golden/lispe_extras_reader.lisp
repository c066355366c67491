; ': is the quoted atom :
(println 'a ': 1)
(println (type ':) (eq ': ':))
; operator characters glued to a letter end before it, as LispE's tokenizer splits them
(setq dr 1 y 2)
(println (+dr y))
(setq i '(7 8 9))
(println (@i 1))
(println '(-x =z *e *y*))
; a name starting with a letter keeps its operator characters; numbers keep their sign
(println '(set@ key@ a+b x-1 -1 +2.5))
(println (- 5 -1))
{"a":1 "b":2}
(println {"k":':})
