package workers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registers the GIF decoder with package image
	"image/jpeg"
	"image/png"

	"golang.org/x/image/draw"
)

// Limits of the thumbnail kind.
const (
	// MaxThumbnailSide is the largest accepted output width or height.
	MaxThumbnailSide = 4096
	// MaxImagePixels is the largest accepted input image (width*height),
	// checked from the image header before any pixel is decoded.
	MaxImagePixels = 40_000_000
)

// ErrImageTooLarge is wrapped (inside a *PermanentError) by Thumbnail when the
// input image has more than MaxImagePixels pixels.
var ErrImageTooLarge = errors.New("image too large")

// catmullRomTmpBudget bounds the number of dstWidth*srcHeight entries of the
// temporary buffer that draw.CatmullRom allocates (32 bytes each: 64 MiB).
const catmullRomTmpBudget = 2 << 20

// ThumbnailArgs are the arguments of the thumbnail kind (JSON as shown).
type ThumbnailArgs struct {
	Image  []byte `json:"image"`            // base64 in JSON: a PNG, JPEG or GIF
	Width  int    `json:"width"`            // 1..4096
	Height int    `json:"height,omitempty"` // 0 = keep aspect ratio; else 1..4096
	Format string `json:"format"`           // "png" | "jpeg"
}

// thumbnailJPEGQuality is the quality of JPEG thumbnails.
const thumbnailJPEGQuality = 85

// Thumbnail decodes a.Image, scales it to Width x Height (Height 0: keep the
// aspect ratio, at least 1px), encodes it as a.Format and returns the bytes
// and content type ("image/png" or "image/jpeg").
//
// Invalid arguments, undecodable or unsupported images and images over
// MaxImagePixels are reported as a *PermanentError; a derived height above
// MaxThumbnailSide is invalid too. Of an animated GIF only the first frame is
// used. JPEG output has no alpha channel, so transparent pixels are
// composited onto white.
//
// Scaling (see thumbnailScale) uses draw.CatmullRom for quality. Large
// downscales are first reduced by exact 2:1 box-filter halvings
// (draw.ApproxBiLinear at exactly half size), which is fast, does not alias
// and bounds the memory of CatmullRom's temporary buffer; only when even that
// would exceed 64 MiB (very large outputs, which are then less than 2x
// smaller than their source) does it scale with draw.ApproxBiLinear directly.
//
// ctx is checked before and after each expensive step (decode, scale,
// encode); its error is returned unwrapped.
func Thumbnail(ctx context.Context, a ThumbnailArgs) (data []byte, contentType string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	contentType, err = thumbnailContentType(a.Format)
	if err != nil {
		return nil, "", Permanent(err)
	}
	if a.Width < 1 || a.Width > MaxThumbnailSide {
		return nil, "", Permanent(fmt.Errorf("thumbnail: width %d out of range 1..%d", a.Width, MaxThumbnailSide))
	}
	if a.Height < 0 || a.Height > MaxThumbnailSide {
		return nil, "", Permanent(fmt.Errorf("thumbnail: height %d out of range 0..%d", a.Height, MaxThumbnailSide))
	}

	cfg, srcFormat, err := image.DecodeConfig(bytes.NewReader(a.Image))
	if err != nil {
		return nil, "", Permanent(fmt.Errorf("thumbnail: cannot read image header: %w", err))
	}
	switch srcFormat {
	case "png", "jpeg", "gif":
	default:
		return nil, "", Permanent(fmt.Errorf("thumbnail: unsupported image format %q", srcFormat))
	}
	if err := checkThumbnailSource(cfg.Width, cfg.Height); err != nil {
		return nil, "", Permanent(err)
	}
	dw, dh := a.Width, a.Height
	if dh == 0 {
		h := thumbnailHeight(cfg.Width, cfg.Height, dw)
		if h > MaxThumbnailSide {
			return nil, "", Permanent(fmt.Errorf("thumbnail: derived height %d for width %d exceeds %d; give an explicit height", h, dw, MaxThumbnailSide))
		}
		dh = int(h)
	}

	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	src, _, err := image.Decode(bytes.NewReader(a.Image))
	if err != nil {
		return nil, "", Permanent(fmt.Errorf("thumbnail: cannot decode %s image: %w", srcFormat, err))
	}
	sb := src.Bounds()
	if sb.Empty() {
		return nil, "", Permanent(fmt.Errorf("thumbnail: empty %s image", srcFormat))
	}

	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	op := draw.Src
	if a.Format == "jpeg" {
		draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
		op = draw.Over
	}
	thumbnailScale(dst, src, op)

	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	switch a.Format {
	case "png":
		err = png.Encode(&buf, dst)
	case "jpeg":
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: thumbnailJPEGQuality})
	}
	if err != nil {
		return nil, "", fmt.Errorf("thumbnail: encode %s: %w", a.Format, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), contentType, nil
}

// thumbnailContentType returns the content type of an output format.
func thumbnailContentType(format string) (string, error) {
	switch format {
	case "png":
		return "image/png", nil
	case "jpeg":
		return "image/jpeg", nil
	}
	return "", fmt.Errorf("thumbnail: unsupported output format %q (want \"png\" or \"jpeg\")", format)
}

// checkThumbnailSource refuses images with no pixels or more than MaxImagePixels.
func checkThumbnailSource(w, h int) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("thumbnail: invalid image dimensions %dx%d", w, h)
	}
	if int64(w) > MaxImagePixels/int64(h) { // w*h > MaxImagePixels, without overflow
		return fmt.Errorf("thumbnail: %dx%d image exceeds %d pixels: %w", w, h, MaxImagePixels, ErrImageTooLarge)
	}
	return nil
}

// thumbnailHeight returns the height that keeps the aspect ratio of a
// sw x sh image at width dw, rounded to the nearest pixel and at least 1.
func thumbnailHeight(sw, sh, dw int) int64 {
	return max(1, (int64(sh)*int64(dw)*2+int64(sw))/(int64(sw)*2))
}

// thumbnailScale scales all of src onto all of dst with op.
//
// While src is at least 4x larger than dst along an axis, that axis is halved
// with draw.ApproxBiLinear: at exactly 2:1 it samples midway between pixel
// pairs, i.e. it averages each 2x2 (or 2x1) block, a box filter. Halving also
// continues, along both axes where possible, while the final CatmullRom pass
// would need a temporary buffer over catmullRomTmpBudget. The remaining
// 1x-4x scale is done with draw.CatmullRom, or with draw.ApproxBiLinear when
// the buffer would still be over budget (then the source is less than 2x the
// destination height, where bilinear sampling hardly aliases).
func thumbnailScale(dst *image.RGBA, src image.Image, op draw.Op) {
	dw, dh := dst.Bounds().Dx(), dst.Bounds().Dy()
	for {
		sb := src.Bounds()
		sw, sh := sb.Dx(), sb.Dy()
		halveW, halveH := sw >= 4*dw, sh >= 4*dh
		if !halveH && int64(dw)*int64(sh) > catmullRomTmpBudget && sh >= 2*dh {
			halveW, halveH = halveW || sw >= 2*dw, true
		}
		if !halveW && !halveH {
			break
		}
		// An odd last column or row is dropped so that the ratio is exactly
		// 2:1 and every sample lands between two pixels.
		hw, hh := sw, sh
		if halveW {
			hw = sw / 2
			sb.Max.X = sb.Min.X + 2*hw
		}
		if halveH {
			hh = sh / 2
			sb.Max.Y = sb.Min.Y + 2*hh
		}
		half := image.NewRGBA(image.Rect(0, 0, hw, hh))
		draw.ApproxBiLinear.Scale(half, half.Bounds(), src, sb, draw.Src, nil)
		src = half
	}
	var scaler draw.Scaler = draw.CatmullRom
	if int64(dw)*int64(src.Bounds().Dy()) > catmullRomTmpBudget {
		scaler = draw.ApproxBiLinear
	}
	scaler.Scale(dst, dst.Bounds(), src, src.Bounds(), op, nil)
}
