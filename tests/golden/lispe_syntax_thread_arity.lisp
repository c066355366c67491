; a wrong number of arguments fails at the call, in the caller
(dethread worker (a b) (threadstore "w" (+ a b)))
(worker 1)
