(integer "abc")
