package workers

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"runtime"
	"testing"
	"time"

	"golang.org/x/image/draw"
)

// thumbTestImage returns a w x h image with a colour gradient and, if alpha, a
// transparent left half.
func thumbTestImage(w, h int, alpha bool) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha && x < w/2 {
				a = 0
			}
			m.SetNRGBA(x, y, color.NRGBA{R: uint8(x * 255 / w), G: uint8(y * 255 / h), B: uint8((x ^ y) & 0xff), A: a})
		}
	}
	return m
}

func thumbEncodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func thumbEncodeJPEG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// thumbEncodeGIF encodes an animated GIF whose frames are paletted copies of ms.
func thumbEncodeGIF(t testing.TB, ms ...image.Image) []byte {
	t.Helper()
	g := &gif.GIF{}
	for _, m := range ms {
		p := image.NewPaletted(m.Bounds(), palette.Plan9)
		for y := m.Bounds().Min.Y; y < m.Bounds().Max.Y; y++ {
			for x := m.Bounds().Min.X; x < m.Bounds().Max.X; x++ {
				p.Set(x, y, m.At(x, y))
			}
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func thumbSolid(w, h int, c color.Color) image.Image {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, c)
		}
	}
	return m
}

// thumbPNGChunk appends a PNG chunk with its length and CRC.
func thumbPNGChunk(b []byte, typ string, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	start := len(b)
	b = append(b, typ...)
	b = append(b, data...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}

// thumbBombPNG returns a valid, fully decodable 1-bit grayscale PNG of w x h black
// pixels. It compresses to a few kilobytes (a decompression bomb) and is
// built row by row, so generating it never holds the whole image in memory.
// With header only, the IDAT/IEND chunks are omitted.
func thumbBombPNG(t testing.TB, w, h int, headerOnly bool) []byte {
	t.Helper()
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	ihdr = append(ihdr, 1, 0, 0, 0, 0) // bit depth 1, grayscale, deflate, filter 0, no interlace
	b = thumbPNGChunk(b, "IHDR", ihdr)
	if headerOnly {
		return b
	}
	var z bytes.Buffer
	zw, err := zlib.NewWriterLevel(&z, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]byte, 1+(w+7)/8) // filter byte 0 + packed pixels
	for range h {
		if _, err := zw.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b = thumbPNGChunk(b, "IDAT", z.Bytes())
	return thumbPNGChunk(b, "IEND", nil)
}

func TestThumbnail(t *testing.T) {
	t.Parallel()
	pngSrc := thumbEncodePNG(t, thumbTestImage(300, 200, false))
	jpegSrc := thumbEncodeJPEG(t, thumbTestImage(640, 480, false))
	gifSrc := thumbEncodeGIF(t, thumbTestImage(50, 80, false), thumbTestImage(20, 20, false))
	tests := []struct {
		name         string
		image        []byte
		width        int
		height       int
		format       string
		wantW, wantH int
	}{
		{name: "png derived height", image: pngSrc, width: 100, format: "png", wantW: 100, wantH: 67},
		{name: "png to jpeg given height", image: pngSrc, width: 64, height: 64, format: "jpeg", wantW: 64, wantH: 64},
		{name: "jpeg derived height", image: jpegSrc, width: 128, format: "jpeg", wantW: 128, wantH: 96},
		{name: "jpeg to png given height", image: jpegSrc, width: 10, height: 300, format: "png", wantW: 10, wantH: 300},
		{name: "gif first frame derived height", image: gifSrc, width: 25, format: "png", wantW: 25, wantH: 40},
		{name: "gif to jpeg given height", image: gifSrc, width: 7, height: 3, format: "jpeg", wantW: 7, wantH: 3},
		{name: "upscale", image: thumbEncodePNG(t, thumbTestImage(10, 5, false)), width: 40, format: "png", wantW: 40, wantH: 20},
		{name: "derived height at least 1px", image: thumbEncodePNG(t, thumbTestImage(1000, 1, false)), width: 10, format: "png", wantW: 10, wantH: 1},
		{name: "max width", image: pngSrc, width: MaxThumbnailSide, height: 2, format: "jpeg", wantW: 4096, wantH: 2},
		{name: "max height", image: pngSrc, width: 2, height: MaxThumbnailSide, format: "png", wantW: 2, wantH: 4096},
		{name: "tall source to wide thumbnail", image: thumbEncodePNG(t, thumbTestImage(100, 600, false)), width: 1024, height: 50, format: "png", wantW: 1024, wantH: 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, ct, err := Thumbnail(context.Background(), ThumbnailArgs{Image: tc.image, Width: tc.width, Height: tc.height, Format: tc.format})
			if err != nil {
				t.Fatalf("Thumbnail: %v", err)
			}
			if want := "image/" + tc.format; ct != want {
				t.Errorf("content type = %q, want %q", ct, want)
			}
			cfg, format, err := image.DecodeConfig(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("output header: %v", err)
			}
			if format != tc.format {
				t.Errorf("output format = %q, want %q", format, tc.format)
			}
			if cfg.Width != tc.wantW || cfg.Height != tc.wantH {
				t.Errorf("output size = %dx%d, want %dx%d", cfg.Width, cfg.Height, tc.wantW, tc.wantH)
			}
			var m image.Image
			if tc.format == "png" {
				m, err = png.Decode(bytes.NewReader(out))
			} else {
				m, err = jpeg.Decode(bytes.NewReader(out))
			}
			if err != nil {
				t.Fatalf("output does not decode as %s: %v", tc.format, err)
			}
			if got := m.Bounds().Size(); got != image.Pt(tc.wantW, tc.wantH) {
				t.Errorf("decoded size = %v, want %dx%d", got, tc.wantW, tc.wantH)
			}
		})
	}
}

// TestThumbnailPixels checks colours survive scaling: a solid image stays
// the same colour and transparency becomes white in JPEG output.
func TestThumbnailPixels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		image  []byte
		format string
		want   color.RGBA
		tol    int
	}{
		{name: "solid png", image: thumbEncodePNG(t, thumbSolid(300, 200, color.RGBA{10, 200, 30, 255})), format: "png", want: color.RGBA{10, 200, 30, 255}, tol: 1},
		{name: "solid gif", image: thumbEncodeGIF(t, thumbSolid(90, 60, color.RGBA{255, 0, 0, 255})), format: "png", want: color.RGBA{255, 0, 0, 255}, tol: 1},
		{name: "transparent to jpeg is white", image: thumbEncodePNG(t, thumbSolid(300, 200, color.NRGBA{0, 0, 0, 0})), format: "jpeg", want: color.RGBA{255, 255, 255, 255}, tol: 2},
		{name: "transparent to png stays transparent", image: thumbEncodePNG(t, thumbSolid(300, 200, color.NRGBA{0, 0, 0, 0})), format: "png", want: color.RGBA{}, tol: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := Thumbnail(context.Background(), ThumbnailArgs{Image: tc.image, Width: 30, Format: tc.format})
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := image.Decode(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			b := m.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					r, g, bl, a := m.At(x, y).RGBA()
					got := [4]int{int(r >> 8), int(g >> 8), int(bl >> 8), int(a >> 8)}
					want := [4]int{int(tc.want.R), int(tc.want.G), int(tc.want.B), int(tc.want.A)}
					for i := range got {
						if d := got[i] - want[i]; d < -tc.tol || d > tc.tol {
							t.Fatalf("pixel (%d,%d) = %v, want %v ±%d", x, y, got, want, tc.tol)
						}
					}
				}
			}
		})
	}
}

func TestThumbnailErrors(t *testing.T) {
	t.Parallel()
	pngSrc := thumbEncodePNG(t, thumbTestImage(30, 20, false))
	tests := []struct {
		name   string
		args   ThumbnailArgs
		wantIs error // also required, besides being a *PermanentError
	}{
		{name: "garbage", args: ThumbnailArgs{Image: []byte("this is not an image at all"), Width: 10, Format: "png"}, wantIs: image.ErrFormat},
		{name: "empty input", args: ThumbnailArgs{Width: 10, Format: "png"}},
		{name: "truncated png", args: ThumbnailArgs{Image: pngSrc[:len(pngSrc)/2], Width: 10, Format: "png"}},
		{name: "corrupt jpeg", args: ThumbnailArgs{Image: append([]byte("\xff\xd8\xff\xdb"), bytes.Repeat([]byte{0}, 64)...), Width: 10, Format: "png"}},
		{name: "unsupported output format", args: ThumbnailArgs{Image: pngSrc, Width: 10, Format: "webp"}},
		{name: "output format is case sensitive", args: ThumbnailArgs{Image: pngSrc, Width: 10, Format: "PNG"}},
		{name: "gif output unsupported", args: ThumbnailArgs{Image: pngSrc, Width: 10, Format: "gif"}},
		{name: "width zero", args: ThumbnailArgs{Image: pngSrc, Width: 0, Format: "png"}},
		{name: "width too large", args: ThumbnailArgs{Image: pngSrc, Width: 4097, Format: "png"}},
		{name: "negative height", args: ThumbnailArgs{Image: pngSrc, Width: 10, Height: -1, Format: "png"}},
		{name: "height too large", args: ThumbnailArgs{Image: pngSrc, Width: 10, Height: 4097, Format: "png"}},
		{name: "derived height too large", args: ThumbnailArgs{Image: thumbEncodePNG(t, thumbTestImage(1, 100, false)), Width: 4096, Format: "png"}},
		{name: "bomb header 10000x10000", args: ThumbnailArgs{Image: thumbBombPNG(t, 10000, 10000, true), Width: 10, Format: "png"}, wantIs: ErrImageTooLarge},
		{name: "zero width header", args: ThumbnailArgs{Image: thumbBombPNG(t, 0, 10, true), Width: 10, Format: "png"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, ct, err := Thumbnail(context.Background(), tc.args)
			if err == nil {
				t.Fatalf("Thumbnail succeeded (%d bytes, %q), want error", len(out), ct)
			}
			var pe *PermanentError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *PermanentError", err, err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tc.wantIs)
			}
			if out != nil || ct != "" {
				t.Errorf("got output %d bytes, %q alongside error", len(out), ct)
			}
		})
	}
}

// TestThumbnailBomb checks that an image over MaxImagePixels is refused from
// its header: the call allocates far less than a full decode would.
// Not parallel: it measures allocations process-wide.
func TestThumbnailBomb(t *testing.T) {
	tests := []struct {
		name string
		w, h int
	}{
		{name: "8000x6000 real png", w: 8000, h: 6000},
		{name: "10000x10000 real png", w: 10000, h: 10000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := thumbBombPNG(t, tc.w, tc.h, false)
			if len(data) > 1<<20 {
				t.Fatalf("bomb is %d bytes, want a small file", len(data))
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(data))
			if err != nil || cfg.Width != tc.w || cfg.Height != tc.h {
				t.Fatalf("bomb header = %+v, %v; want %dx%d", cfg, err, tc.w, tc.h)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err = Thumbnail(context.Background(), ThumbnailArgs{Image: data, Width: 128, Format: "jpeg"})
			runtime.ReadMemStats(&after)
			var pe *PermanentError
			if !errors.As(err, &pe) || !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("error = %v, want a permanent ErrImageTooLarge", err)
			}
			// A decode would need w*h bytes for the gray pixels alone.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Errorf("allocated %d bytes refusing the bomb, want < 1 MiB (full decode: %d)", alloc, tc.w*tc.h)
			}
		})
	}
}

// TestThumbnailScale checks every scaling path (direct CatmullRom, box halvings
// then CatmullRom, halvings then bilinear for huge outputs) on a source
// whose red and green channels are linear ramps: the output must be the same
// ramps at the output's resolution, and a 1px checkerboard must come out an
// even grey (no aliasing) whenever the scale allows it.
func TestThumbnailScale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		sw, sh, dw, dh int
		noAlias        bool // a checkerboard must average to grey
	}{
		{name: "direct catmull-rom", sw: 300, sh: 200, dw: 100, dh: 67, noAlias: true},
		{name: "upscale", sw: 20, sh: 10, dw: 80, dh: 40},
		{name: "halvings both axes", sw: 1000, sh: 800, dw: 50, dh: 40, noAlias: true},
		{name: "halvings odd sizes", sw: 651, sh: 799, dw: 37, dh: 50, noAlias: true},
		{name: "halvings one axis", sw: 64, sh: 3000, dw: 64, dh: 100},
		{name: "memory budget halvings then catmull-rom", sw: 4100, sh: 530, dw: 4000, dh: 140},
		{name: "memory budget bilinear", sw: 8, sh: 1100, dw: 4096, dh: 600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ramp := image.NewRGBA(image.Rect(0, 0, tc.sw, tc.sh))
			for y := range tc.sh {
				for x := range tc.sw {
					ramp.SetRGBA(x, y, color.RGBA{
						R: uint8(math.Round(255 * (float64(x) + 0.5) / float64(tc.sw))),
						G: uint8(math.Round(255 * (float64(y) + 0.5) / float64(tc.sh))),
						A: 255,
					})
				}
			}
			dst := image.NewRGBA(image.Rect(0, 0, tc.dw, tc.dh))
			thumbnailScale(dst, ramp, draw.Src)
			const tol = 3.0
			for y := range tc.dh {
				for x := range tc.dw {
					c := dst.RGBAAt(x, y)
					// Near the borders of an upscale the ramp is clamped
					// to its first and last source pixel.
					wantR := thumbClampRamp(255*(float64(x)+0.5)/float64(tc.dw), tc.sw)
					wantG := thumbClampRamp(255*(float64(y)+0.5)/float64(tc.dh), tc.sh)
					if math.Abs(float64(c.R)-wantR) > tol || math.Abs(float64(c.G)-wantG) > tol || c.A != 255 {
						t.Fatalf("pixel (%d,%d) = %v, want R %.1f G %.1f ±%v, A 255", x, y, c, wantR, wantG, tol)
					}
				}
			}
			if !tc.noAlias {
				return
			}
			checker := image.NewGray(image.Rect(0, 0, tc.sw, tc.sh))
			for y := range tc.sh {
				for x := range tc.sw {
					checker.Pix[y*checker.Stride+x] = uint8(255 * ((x + y) & 1))
				}
			}
			thumbnailScale(dst, checker, draw.Src)
			for y := range tc.dh {
				for x := range tc.dw {
					if c := dst.RGBAAt(x, y); c.R < 112 || c.R > 143 {
						t.Fatalf("checkerboard pixel (%d,%d) = %v, want grey near 128", x, y, c)
					}
				}
			}
		})
	}
}

// thumbClampRamp clamps v to the range of a ramp of n pixels.
func thumbClampRamp(v float64, n int) float64 {
	return min(max(v, 255*0.5/float64(n)), 255*(float64(n)-0.5)/float64(n))
}

func TestCheckThumbnailSource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		w, h    int
		wantErr bool
	}{
		{name: "one pixel", w: 1, h: 1},
		{name: "exactly the limit", w: 8000, h: 5000},
		{name: "one row over", w: 8000, h: 5001, wantErr: true},
		{name: "one pixel over", w: MaxImagePixels + 1, h: 1, wantErr: true},
		{name: "would overflow int32", w: math.MaxInt32, h: math.MaxInt32, wantErr: true},
		{name: "zero width", w: 0, h: 5, wantErr: true},
		{name: "negative height", w: 5, h: -5, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := checkThumbnailSource(tc.w, tc.h); (err != nil) != tc.wantErr {
				t.Errorf("checkThumbnailSource(%d, %d) = %v, wantErr %v", tc.w, tc.h, err, tc.wantErr)
			}
		})
	}
}

func TestThumbnailContext(t *testing.T) {
	t.Parallel()
	src := thumbEncodePNG(t, thumbTestImage(64, 64, false))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{name: "canceled", ctx: canceled, want: context.Canceled},
		{name: "deadline exceeded", ctx: expired, want: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Thumbnail(tc.ctx, ThumbnailArgs{Image: src, Width: 16, Format: "png"})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			var pe *PermanentError
			if errors.As(err, &pe) {
				t.Errorf("context error %v must not be permanent", err)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name    string
		err     error
		wantNil bool
		wantMsg string
	}{
		{name: "nil stays nil", err: nil, wantNil: true},
		{name: "wraps", err: base, wantMsg: "boom"},
		{name: "wrapped chain", err: fmt.Errorf("ctx: %w", base), wantMsg: "ctx: boom"},
		{name: "already permanent", err: Permanent(base), wantMsg: "boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Permanent(tc.err)
			if tc.wantNil {
				if got != nil {
					t.Fatalf("Permanent(nil) = %v, want nil", got)
				}
				return
			}
			var pe *PermanentError
			if !errors.As(got, &pe) {
				t.Fatalf("Permanent(%v) is not a *PermanentError", tc.err)
			}
			if errors.As(pe.Err, new(*PermanentError)) {
				t.Errorf("Permanent double-wrapped %v", tc.err)
			}
			if !errors.Is(got, base) {
				t.Errorf("Permanent(%v) does not unwrap to the base error", tc.err)
			}
			if got.Error() != tc.wantMsg {
				t.Errorf("message = %q, want %q", got.Error(), tc.wantMsg)
			}
		})
	}
}

// BenchmarkThumbnail measures a 1024x768 image scaled to a 128px-wide
// thumbnail (derived height 96).
func BenchmarkThumbnail(b *testing.B) {
	src := thumbTestImage(1024, 768, false)
	tests := []struct {
		name   string
		image  []byte
		format string
	}{
		{name: "jpeg_to_jpeg", image: thumbEncodeJPEG(b, src), format: "jpeg"},
		{name: "png_to_png", image: thumbEncodePNG(b, src), format: "png"},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			args := ThumbnailArgs{Image: tc.image, Width: 128, Format: tc.format}
			for b.Loop() {
				if _, _, err := Thumbnail(context.Background(), args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
