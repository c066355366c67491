(println (left "hello" 2) (right "hello" 3) (middle "hello" 1 3) (right "hi" 5) (left "hi" 0))
(println (padding "ab" "." 5) (padding "abc" "-" 2) (padding 7 "0" 3))
