; tokenization_pipeline.lisp -- the "Tokenization" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume:
; `text` and `generator` (loading the model also makes its tokenizer the default one, which
; tokenizer_encode and tokenizer_decode use).

(use 'lispe_torch)

; [added] the generator and the text the pipeline starts from
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(torch_generator_config generator {"max_length":30 "temperature":0.7 "top_p":0.9 "seed":2})
(setq text "The three primary colours are")

; Complete pipeline from text to generated text
(setq tokens (tokenizer_encode text))
(setq input_tensor (torch_tensor tokens))
(setq output_tensor (torch_generate generator input_tensor "top_p"))
(setq generated_text (tokenizer_decode output_tensor))

; [added]
(println "text:    " text)
(println "tokens:  " tokens)
(println "output:  " (tensor_to_list output_tensor))
(println "generated text:")
(println generated_text)
