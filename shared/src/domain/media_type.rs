//! The media types exvid accepts: source video containers and image types, with their file
//! extensions and content types. Used by intake validation, the key layout and the sniffer.

/// Accepted source video containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoContainer {
    Mp4,
    Mov,
    Webm,
}

impl VideoContainer {
    pub fn extension(self) -> &'static str {
        match self {
            VideoContainer::Mp4 => "mp4",
            VideoContainer::Mov => "mov",
            VideoContainer::Webm => "webm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            VideoContainer::Mp4 => "video/mp4",
            VideoContainer::Mov => "video/quicktime",
            VideoContainer::Webm => "video/webm",
        }
    }

    pub fn from_content_type(content_type: &str) -> Option<Self> {
        [Self::Mp4, Self::Mov, Self::Webm]
            .into_iter()
            .find(|c| c.content_type().eq_ignore_ascii_case(content_type.trim()))
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        [Self::Mp4, Self::Mov, Self::Webm]
            .into_iter()
            .find(|c| c.extension().eq_ignore_ascii_case(ext))
    }
}

/// Accepted still-image types (posters, instruction images).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Svg,
}

impl ImageType {
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Webp => "webp",
            ImageType::Svg => "svg",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Svg => "image/svg+xml",
        }
    }

    pub fn from_content_type(content_type: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Webp, Self::Svg]
            .into_iter()
            .find(|c| c.content_type().eq_ignore_ascii_case(content_type.trim()))
    }

    /// `jpg` and `jpeg` both name JPEG files.
    pub fn from_extension(ext: &str) -> Option<Self> {
        if ext.eq_ignore_ascii_case("jpeg") {
            return Some(ImageType::Jpeg);
        }
        [Self::Jpeg, Self::Png, Self::Webp, Self::Svg]
            .into_iter()
            .find(|c| c.extension().eq_ignore_ascii_case(ext))
    }
}
